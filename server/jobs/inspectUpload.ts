import { addAbortSignal } from 'node:stream';
import { ClamdUnreachableError, StreamTooLargeError, type Scanner } from '../../processors/clamd.ts';
import { inspectStream } from '../../processors/inspect.ts';
import { enqueueJob } from '../infra/db/jobQueue.ts';
import { PermanentJobError, ServiceUnreachableError, type JobHandler, type JobOutcome } from './jobRunner.ts';
import type { HookContext } from '../../hooks/hookContext.ts';
import type { UploadFacts } from '../../hooks/uploadLifecycle.ts';
import { allowedTypeOf, narrowPolicy, refuseDetected } from '../../hooks/typePolicy.ts';
import { refuseDirectHead } from '../../hooks/directUpload.ts';

/**
 * The `inspect` job: one streaming read of the stored bytes gives the detected type, the
 * sha256 and ClamAV's verdict. Infected and rejected uploads lose their bytes; nothing else
 * may ever serve them. A scan that could not run is an error: the job retries, the upload
 * waits in `inspecting`, and it never becomes `ready` unscanned. clamd unreachable is an
 * outage, not a fault of the upload: the job waits for it (up to SCAN_WAIT_MAX) without using
 * its attempts. A stream over clamd's StreamMaxLength is refused again on every try: it fails at once.
 */
export function inspectUpload(context: HookContext, scanner: Scanner | undefined): JobHandler {
  const { db, storage, config, lifecycle } = context;
  return async (job, { log, signal }): Promise<JobOutcome> => {
    const taken = await lifecycle.move(db, job.upload_id, 'inspecting', { from: ['received'] });
    const upload = taken.ok ? taken.upload : taken.current;
    if (!upload) throw new PermanentJobError('the upload record is gone');
    // A retried inspection finds its upload `inspecting` already; any other state moved on.
    if (upload.status !== 'inspecting') return { result: { skipped: `upload is ${upload.status}` }, commit: async () => undefined };
    // Refused (deleted meanwhile): the DELETE removes the bytes itself.
    let removeBytes = false;
    const refuse = (status: 'infected' | 'rejected', reason: string, facts: UploadFacts, result: Record<string, unknown>): JobOutcome => ({
      result,
      commit: async (trx) => {
        removeBytes = (await lifecycle.move(trx, upload.id, status, { from: ['inspecting'], reason, facts })).ok;
      },
      afterCommit: async () => {
        if (removeBytes) await storage.removeUpload(upload.id);
      },
    });
    // The server never saw a direct upload's bytes stream by: its first bytes are judged now, by a ranged read.
    if (upload.protocol !== 'tus') {
      const refusal = await refuseDirectHead(context, upload);
      if (refusal) return refuse('rejected', refusal.reason, { detected_type: refusal.detectedType }, { detected_type: refusal.detectedType, firstBytes: true });
    }
    // A run that lost its lease stops reading: its result would be dropped anyway.
    const source = addAbortSignal(signal, await storage.readOriginal(upload.storage_key));
    const found = await inspectStream(source, scanner).catch((error: unknown) => {
      if (error instanceof ClamdUnreachableError) {
        throw new ServiceUnreachableError(error.message, 'the virus scanner (clamd) is unreachable', config.scanWaitMaxMs, 'SCAN_WAIT_MAX');
      }
      if (error instanceof StreamTooLargeError) {
        log.warn({ err: error }, 'clamd refused the stream as too large');
        throw new PermanentJobError("the file is larger than the virus scanner accepts (clamd's StreamMaxLength)");
      }
      throw error;
    });
    if (upload.size !== null && found.size !== upload.size) {
      throw new Error(`stored ${found.size} bytes but the upload declared ${upload.size}`);
    }
    const facts = { sha256: found.sha256, detected_type: found.detected?.mime ?? null };
    const result = { ...facts, size: found.size, scan: found.scan };

    if (found.scan.status === 'infected') {
      const reason = `ClamAV found ${found.scan.viruses.join(', ')}`;
      log.warn({ reason }, 'upload infected');
      return refuse('infected', reason, facts, result);
    }
    const policy = narrowPolicy(config.typePolicy, upload.limits);
    const declared = { filename: upload.safe_filename, claimedType: upload.claimed_type, size: found.size };
    const refusal = refuseDetected(policy, declared, found.detected);
    if (refusal) return refuse('rejected', refusal, facts, result);
    // Images, videos and audio go on to their processing job; other allowed types (PDF) are done.
    // An mp4 or WebM declared as audio is audio (typePolicy.ts's families).
    const media = mediaKindOf(found.detected && allowedTypeOf(policy, declared, found.detected.mime)?.mime);
    return {
      result,
      commit: async (trx) => {
        const moved = await lifecycle.move(trx, upload.id, media ? 'processing' : 'ready', {
          from: ['inspecting'],
          facts,
          with: media ? (trx) => enqueueJob(trx, upload.id, media, config.jobMaxAttempts) : undefined,
        });
        if (!moved.ok) log.info({ status: moved.current?.status }, 'inspected upload had moved on; its state is kept');
      },
    };
  };
}

function mediaKindOf(mime: string | undefined): 'image' | 'video' | 'audio' | undefined {
  if (mime?.startsWith('image/')) return 'image';
  if (mime?.startsWith('video/')) return 'video';
  if (mime?.startsWith('audio/')) return 'audio';
  return undefined;
}
