import { parseArgs } from 'node:util';
import { listUploadIdsInStatus } from '../infra/db/records.ts';
import { requeueForOutputs, requeueUpload } from '../jobs/requeue.ts';
import { printLine, runCommand, UsageError } from './runCommand.ts';

const usage = `usage: npm run requeue -- <upload id>… | --status failed
       npm run requeue -- --outputs hls,storyboard,thumbhash <upload id>… | --status ready

Runs the failed job of each failed upload again with fresh attempts (JOB_MAX_ATTEMPTS); the upload
goes back to the state that job runs from (received for inspect, processing for image and video).
One JSON line per upload on stdout. Refused, with the reason, for an upload that is not failed,
failed on its contents, or whose bytes are gone. Exit 1 when any was refused.
With --outputs: runs the job of each ready image or video again that lacks one of the outputs named
(made since it was processed; thumbhash, the placeholder in its media, for images and videos, the
others for videos) and would get it with the current settings; it stays ready and served meanwhile.
Refused for the others (with --status ready, without exit 1).
With the embedded database, stop the server first.`;

const addableOutputs = ['hls', 'storyboard', 'thumbhash'];

type Wanted = ({ ids: string[] } | { status: 'failed' | 'ready' }) & { outputs?: string[] };

function uploadsWanted(args: string[]): Wanted {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { status: { type: 'string' }, outputs: { type: 'string' } }, strict: true, allowPositionals: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  const outputs = values.outputs?.split(',').map((name) => name.trim());
  const unknown = outputs?.filter((name) => !addableOutputs.includes(name)) ?? [];
  if (unknown.length > 0 || outputs?.length === 0) throw new UsageError(`--outputs: one or more of ${addableOutputs.join(', ')}, not "${values.outputs}"`);
  const status = outputs ? 'ready' : 'failed';
  if (values.status !== undefined) {
    if (values.status !== status) throw new UsageError(`--status: ${outputs ? 'only ready uploads get new outputs' : 'only failed uploads can be requeued'}, not "${values.status}"`);
    if (positionals.length > 0) throw new UsageError(`give upload ids or --status ${status}, not both`);
    return { status, outputs };
  }
  if (positionals.length === 0) throw new UsageError(`which uploads? give their ids or --status ${status}`);
  return { ids: positionals, outputs };
}

/** `npm run requeue`: put failed uploads' jobs back in the queue. */
await runCommand('requeue', usage, uploadsWanted, async (context, wanted) => {
  const ids = 'ids' in wanted ? wanted.ids : await listUploadIdsInStatus(context.db, wanted.status);
  let refusals = 0;
  for (const id of ids) {
    const outcome = wanted.outputs ? await requeueForOutputs(context, id, wanted.outputs) : await requeueUpload(context, id);
    if (!outcome.requeued) refusals++;
    printLine(outcome);
  }
  // Every ready upload but an image or video lacking outputs is refused: only the ids asked for count.
  return refusals > 0 && !(wanted.outputs && 'status' in wanted) ? 1 : 0;
});
