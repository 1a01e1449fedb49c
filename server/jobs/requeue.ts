import type { HookContext } from '../../hooks/hookContext.ts';
import { findDoneJob, findFailedJob, requeueJob } from '../infra/db/jobQueue.ts';
import { findUpload, listOutputs } from '../infra/db/records.ts';
import { expectedOutputs, videoOutputsFor } from './processMedia.ts';
import type { PipelineJobKind, UploadStatus } from '../infra/db/schema.ts';

export type RequeueOutcome =
  | { id: string; requeued: true; job: PipelineJobKind; status: UploadStatus; adding?: string[] }
  | { id: string; requeued: false; reason: string };

/** Where each job starts: a requeued job's upload goes back to the state the job runs from. */
const runsFrom: Record<PipelineJobKind, UploadStatus> = { inspect: 'received', image: 'processing', video: 'processing', audio: 'processing' };

/** Thrown inside the transaction to undo the status change when the job was no longer failed. */
class MovedOn extends Error {}

/**
 * Runs a failed upload's failed job again, with fresh attempts (e.g. after it used them up while
 * a service was down). Refused, with the reason, when the upload is not failed, failed on its
 * own contents (no failed job), or its bytes are no longer in the store.
 */
export async function requeueUpload(context: HookContext, id: string): Promise<RequeueOutcome> {
  const { db, storage, config, lifecycle } = context;
  const refused = (reason: string): RequeueOutcome => ({ id, requeued: false, reason });
  const upload = await findUpload(db, id);
  if (!upload) return refused('no such upload');
  if (upload.status !== 'failed') return refused(`upload is ${upload.status}, not failed`);
  const job = await findFailedJob(db, id);
  if (!job) return refused(`no failed job to run again: the upload failed on its contents (${upload.reason ?? 'no reason kept'})`);
  if (!(await storage.hasOriginal(upload.storage_key))) return refused(`its bytes are gone from the store (${storage.describe}): there is nothing to run ${job.kind} on`);
  const status = runsFrom[job.kind];
  try {
    // Both or neither: an upload back in `received` without its job queued would wait forever.
    await db.transaction().execute(async (trx) => {
      const moved = await lifecycle.move(trx, id, status, {
        from: ['failed'],
        with: async (trx) => {
          if (!(await requeueJob(trx, job, config.jobMaxAttempts))) throw new MovedOn();
        },
      });
      if (!moved.ok) throw new MovedOn();
    });
  } catch (error) {
    if (error instanceof MovedOn) return refused('the upload or its job changed meanwhile; look again');
    throw error;
  }
  return { id, requeued: true, job: job.kind, status };
}

/**
 * Runs a ready image's or video's job again so it gets what it lacks of `wanted`, made since it was
 * processed: the outputs `hls` and `storyboard` (videos), the `thumbhash` placeholder in its media
 * (images and videos). The upload stays `ready` and served all along; the job replaces its outputs
 * and media when done (processMedia.ts). Refused when it is not a ready image or video, has them
 * already (or would not get them: HLS off, a clip too short for a storyboard, an image asked only
 * for video outputs), or its bytes are gone.
 */
export async function requeueForOutputs(context: HookContext, id: string, wanted: readonly string[]): Promise<RequeueOutcome> {
  const { db, storage, config } = context;
  const refused = (reason: string): RequeueOutcome => ({ id, requeued: false, reason });
  const upload = await findUpload(db, id);
  if (!upload) return refused('no such upload');
  if (upload.status !== 'ready') return refused(`upload is ${upload.status}, not ready`);
  const kind = (await findDoneJob(db, id, 'video')) ? 'video' : 'image';
  const job = await findDoneJob(db, id, kind);
  if (!job) return refused('not a processed image or video');
  // The thumbhash is no output but a media fact; it is asked for and reported as one.
  const made = new Set([...(await listOutputs(db, id)).map((o) => o.name), ...(upload.media?.thumbhash ? ['thumbhash'] : [])]);
  const duration = upload.media?.duration;
  const outputs = kind === 'video' ? videoOutputsFor(config, typeof duration === 'number' ? duration : null) : expectedOutputs.image;
  const wouldMake: string[] = [...outputs, 'thumbhash'];
  const adding = wanted.filter((name) => wouldMake.includes(name) && !made.has(name));
  const what = kind === 'video' ? 'a video of its length' : 'an image';
  if (adding.length === 0) return refused(`nothing to add: it has ${[...made].sort().join(', ')}, and with these settings ${what} gets ${wouldMake.join(', ')}`);
  if (!(await storage.hasOriginal(upload.storage_key))) return refused(`its bytes are gone from the store (${storage.describe})`);
  if (!(await requeueJob(db, job, config.jobMaxAttempts, 'done'))) return refused(`its ${kind} job changed meanwhile; look again`);
  return { id, requeued: true, job: kind, status: upload.status, adding };
}
