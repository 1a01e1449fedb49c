import type { HookContext } from '../../hooks/hookContext.ts';
import { findFailedJob, requeueFailedJob } from '../infra/db/jobQueue.ts';
import { findUpload } from '../infra/db/records.ts';
import type { PipelineJobKind, UploadStatus } from '../infra/db/schema.ts';

export type RequeueOutcome =
  | { id: string; requeued: true; job: PipelineJobKind; status: UploadStatus }
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
          if (!(await requeueFailedJob(trx, job, config.jobMaxAttempts))) throw new MovedOn();
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
