import { addAbortSignal } from 'node:stream';
import { ClamdUnreachableError, StreamTooLargeError, type Scanner } from '../../processors/clamd.ts';
import { inspectStream } from '../../processors/inspect.ts';
import { enqueueJob } from '../db/jobQueue.ts';
import { changeStatus, findUpload, takeUpload } from '../db/records.ts';
import type { UploadStatus } from '../db/schema.ts';
import { PermanentJobError, ServiceUnreachableError, type JobHandler, type JobOutcome } from './jobRunner.ts';
import type { HookContext } from '../../hooks/hookContext.ts';
import { narrowPolicy, refuseDetected } from '../../hooks/typePolicy.ts';

const inspectable: UploadStatus[] = ['received', 'inspecting'];

/**
 * The `inspect` job: one streaming read of the stored bytes gives the detected type, the
 * sha256 and ClamAV's verdict. Infected and rejected uploads lose their bytes; nothing else
 * may ever serve them. A scan that could not run is an error: the job retries, the upload
 * waits in `inspecting`, and it never becomes `ready` unscanned. clamd unreachable is an
 * outage, not a fault of the upload: the job waits for it (up to SCAN_WAIT_MAX) without using
 * its attempts. A stream over clamd's StreamMaxLength is refused again on every try: it fails at once.
 */
export function inspectUpload(context: HookContext, scanner: Scanner | undefined): JobHandler {
  const { db, storage, config } = context;
  return async (job, { log, signal }): Promise<JobOutcome> => {
    const upload = await takeUpload(db, job.upload_id, inspectable, 'inspecting');
    if (!upload) {
      const current = await findUpload(db, job.upload_id);
      if (!current) throw new PermanentJobError('the upload record is gone');
      return { result: { skipped: `upload is ${current.status}` }, commit: async () => undefined };
    }
    // A run that lost its lease stops reading: its result would be dropped anyway.
    const source = addAbortSignal(signal, await storage.readOriginal(upload.storage_key));
    const found = await inspectStream(source, scanner).catch((error: unknown) => {
      if (error instanceof ClamdUnreachableError) throw new ServiceUnreachableError(error.message, config.scanWaitMaxMs, 'SCAN_WAIT_MAX');
      if (error instanceof StreamTooLargeError) throw new PermanentJobError(error.message);
      throw error;
    });
    if (upload.size !== null && found.size !== upload.size) {
      throw new Error(`stored ${found.size} bytes but the upload declared ${upload.size}`);
    }
    const facts = { sha256: found.sha256, detected_type: found.detected?.mime ?? null };
    const result = { ...facts, size: found.size, scan: found.scan };
    const removeBytes = () => storage.removeUpload(upload.id);

    if (found.scan.status === 'infected') {
      const reason = `ClamAV found ${found.scan.viruses.join(', ')}`;
      log.warn({ reason }, 'upload infected');
      return {
        result,
        commit: (trx) => changeStatus(trx, upload.id, ['inspecting'], { ...facts, status: 'infected', reason }).then(() => undefined),
        afterCommit: removeBytes,
      };
    }
    const refusal = refuseDetected(
      narrowPolicy(config.typePolicy, upload.limits),
      { filename: upload.safe_filename, claimedType: upload.claimed_type, size: found.size },
      found.detected,
    );
    if (refusal) {
      return {
        result,
        commit: (trx) => changeStatus(trx, upload.id, ['inspecting'], { ...facts, status: 'rejected', reason: refusal }).then(() => undefined),
        afterCommit: removeBytes,
      };
    }
    // Images and videos go on to their processing job; other allowed types (PDF) are done.
    const media = mediaKindOf(facts.detected_type);
    return {
      result,
      commit: async (trx) => {
        await changeStatus(trx, upload.id, ['inspecting'], { ...facts, status: media ? 'processing' : 'ready', reason: null });
        if (media) await enqueueJob(trx, upload.id, media, config.jobMaxAttempts);
      },
    };
  };
}

function mediaKindOf(mime: string | null): 'image' | 'video' | undefined {
  if (mime?.startsWith('image/')) return 'image';
  if (mime?.startsWith('video/')) return 'video';
  return undefined;
}
