import { uploadFinish } from '../../hooks/uploadFinish.ts';
import type { HookContext } from '../../hooks/hookContext.ts';
import { changeStatus, findExpiredUploads } from '../db/records.ts';
import { pruneUploadRates } from '../db/uploadRates.ts';

/**
 * Removes what unfinished uploads leave behind. An `uploading` record past its expiry loses
 * its bytes and multipart parts and becomes `expired`; one whose bytes turn out to be complete
 * (the process died between storing the last byte and recording it) is received instead.
 * Then the store sweeps its own expired leftovers, including those no record points to, and
 * the rate limit forgets addresses idle for a minute (its table would otherwise keep every one).
 */
export async function cleanUpExpired(context: HookContext, now = new Date()): Promise<{ expired: number; received: number; swept: number }> {
  const { db, storage, log } = context;
  let expired = 0;
  let received = 0;
  for (;;) {
    const batch = await findExpiredUploads(db, now, 100);
    if (batch.length === 0) break;
    for (const upload of batch) {
      const stored = await storage.datastore.getUpload(upload.id).catch(() => undefined);
      if (stored && stored.size !== undefined && stored.offset === stored.size) {
        await uploadFinish(context, stored);
        received++;
        continue;
      }
      await storage.removeUpload(upload.id);
      await changeStatus(db, upload.id, ['uploading'], { status: 'expired', reason: `not finished before ${upload.expires_at?.toISOString()}` });
      expired++;
    }
  }
  const swept = await storage.sweepExpired();
  await pruneUploadRates(db);
  if (expired + received + swept > 0) log.info({ expired, received, swept }, 'cleanup');
  return { expired, received, swept };
}

/** Runs the cleanup now and then every `intervalMs`; returns the function that stops it. */
export function scheduleCleanup(context: HookContext, intervalMs: number): () => void {
  let running = false;
  const run = () => {
    if (running) return;
    running = true;
    cleanUpExpired(context)
      .catch((err: unknown) => context.log.error({ err }, 'cleanup failed'))
      .finally(() => (running = false));
  };
  run();
  const timer = setInterval(run, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
