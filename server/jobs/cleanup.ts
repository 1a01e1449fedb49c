import { uploadFinish } from '../../hooks/uploadFinish.ts';
import type { HookContext } from '../../hooks/hookContext.ts';
import { findExpiredUploads } from '../db/records.ts';
import type { Upload } from '../db/schema.ts';
import { pruneUploadRates } from '../db/uploadRates.ts';

export interface CleanupOptions {
  now?: Date;
  /**
   * Only list what would be done. The store's own sweep (leftovers no record points to) is
   * skipped: the stores can remove those but not list them.
   */
  dryRun?: boolean;
  /** Told of each expired upload: removed and `expired`, or found complete and `received`. */
  onUpload?: (step: { action: 'expired' | 'received'; upload: Upload }) => void;
}

/**
 * Removes what unfinished uploads leave behind. An `uploading` record past its expiry loses
 * its bytes and multipart parts and becomes `expired`; one whose bytes turn out to be complete
 * (the process died between storing the last byte and recording it) is received instead.
 * Then the store sweeps its own expired leftovers, including those no record points to, and
 * the rate limit forgets addresses idle for a minute (its table would otherwise keep every one).
 */
export async function cleanUpExpired(context: HookContext, options: CleanupOptions = {}): Promise<{ expired: number; received: number; swept: number }> {
  const { db, storage, log, lifecycle } = context;
  const { now = new Date(), dryRun = false, onUpload } = options;
  let expired = 0;
  let received = 0;
  let after: Upload | undefined;
  for (;;) {
    const batch = await findExpiredUploads(db, now, 100, after);
    if (batch.length === 0) break;
    after = batch.at(-1);
    for (const upload of batch) {
      const stored = await storage.datastore.getUpload(upload.id).catch(() => undefined);
      if (stored && stored.size !== undefined && stored.offset === stored.size) {
        // Refused: its own request recorded the finish meanwhile.
        if (!dryRun && !(await uploadFinish(context, stored)).ok) continue;
        onUpload?.({ action: 'received', upload });
        received++;
        continue;
      }
      if (!dryRun) {
        // The state first: a PATCH finishing meanwhile is refused its finish, and its bytes go too.
        const moved = await lifecycle.move(db, upload.id, 'expired', { from: ['uploading'], reason: `not finished before ${upload.expires_at?.toISOString()}` });
        if (!moved.ok) continue;
        await storage.removeUpload(upload.id);
      }
      onUpload?.({ action: 'expired', upload });
      expired++;
    }
  }
  if (dryRun) return { expired, received, swept: 0 };
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
