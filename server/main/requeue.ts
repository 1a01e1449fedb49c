import { parseArgs } from 'node:util';
import { listUploadIdsInStatus } from '../infra/db/records.ts';
import { requeueUpload } from '../jobs/requeue.ts';
import { printLine, runCommand, UsageError } from './runCommand.ts';

const usage = `usage: npm run requeue -- <upload id>… | --status failed

Runs the failed job of each failed upload again with fresh attempts (JOB_MAX_ATTEMPTS); the upload
goes back to the state that job runs from (received for inspect, processing for image and video).
One JSON line per upload on stdout. Refused, with the reason, for an upload that is not failed,
failed on its contents, or whose bytes are gone. Exit 1 when any was refused.
With the embedded database, stop the server first.`;

function uploadsWanted(args: string[]): { ids: string[] } | { status: 'failed' } {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { status: { type: 'string' } }, strict: true, allowPositionals: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.status !== undefined) {
    if (values.status !== 'failed') throw new UsageError(`--status: only failed uploads can be requeued, not "${values.status}"`);
    if (positionals.length > 0) throw new UsageError('give upload ids or --status failed, not both');
    return { status: 'failed' };
  }
  if (positionals.length === 0) throw new UsageError('which uploads? give their ids or --status failed');
  return { ids: positionals };
}

/** `npm run requeue`: put failed uploads' jobs back in the queue. */
await runCommand('requeue', usage, uploadsWanted, async (context, wanted) => {
  const ids = 'ids' in wanted ? wanted.ids : await listUploadIdsInStatus(context.db, wanted.status);
  let refusals = 0;
  for (const id of ids) {
    const outcome = await requeueUpload(context, id);
    if (!outcome.requeued) refusals++;
    printLine(outcome);
  }
  return refusals > 0 ? 1 : 0;
});
