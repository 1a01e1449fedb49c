import { parseArgs } from 'node:util';
import { cleanUpExpired } from '../jobs/cleanup.ts';
import { printLine, runCommand, UsageError } from './runCommand.ts';

const usage = `usage: npm run cleanup [-- --dry-run]

Expires the unfinished uploads whose time ran out (their bytes are removed) and receives those
found complete, now instead of at the next CLEANUP_INTERVAL. One JSON line per upload on stdout,
then a summary. --dry-run lists the same uploads and changes nothing (the store's sweep of
leftovers no record points to is not listed). With the embedded database, stop the server first.`;

function parseCleanupArgs(args: string[]): { dryRun: boolean } {
  try {
    return { dryRun: parseArgs({ args, options: { 'dry-run': { type: 'boolean', default: false } }, strict: true }).values['dry-run'] };
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** `npm run cleanup`: the periodic cleanup once, by hand, listing each upload it expires or receives. */
await runCommand('cleanup', usage, parseCleanupArgs, async (context, { dryRun }) => {
  const totals = await cleanUpExpired(context, {
    dryRun,
    onUpload: ({ action, upload }) => printLine({ action, id: upload.id, owner: upload.owner, filename: upload.filename, expiresAt: upload.expires_at, dryRun }),
  });
  printLine({ ...totals, dryRun });
  return 0;
});
