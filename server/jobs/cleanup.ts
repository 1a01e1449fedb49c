import { removeParts } from '../../hooks/concatenation.ts';
import { uploadFinish } from '../../hooks/uploadFinish.ts';
import { finishPostUpload, postedSize } from '../../hooks/directUpload.ts';
import type { HookContext } from '../../hooks/hookContext.ts';
import { deleteExpiredKeys } from '../infra/db/idempotencyKeys.ts';
import { deleteOutputs, findUnfinishedUploads, findUploadsToReclaim, markReclaimed } from '../infra/db/records.ts';
import type { Upload } from '../infra/db/schema.ts';
import { removeDeadProcessesTempFiles } from '../infra/processes/processTempFiles.ts';
import { applyRetentions, type RetentionTotals } from '../infra/db/retention.ts';
import { pruneUploadRates } from '../infra/db/uploadRates.ts';
import { findLeftoverParts } from '../infra/db/uploadParts.ts';

export interface CleanupOptions {
  now?: Date;
  /**
   * Only list what would be done. The store's own sweep (leftovers no record points to) is
   * skipped: the stores can remove those but not list them.
   */
  dryRun?: boolean;
  /**
   * Told of each upload it acts on: an unfinished one removed and `expired`, or found complete and
   * `received`; one whose bytes (a failed upload past FAILED_RETENTION) or leftovers were `reclaimed`.
   */
  onUpload?: (step: { action: CleanupAction; upload: Upload }) => void;
}

export type CleanupAction = 'expired' | 'received' | 'reclaimed';

export interface CleanupTotals extends RetentionTotals {
  /** Temp files and folders of processes that ended (processTempFiles.ts). */
  tempFiles: number;
  expired: number;
  received: number;
  reclaimed: number;
  parts: number;
  swept: number;
  /** Idempotency-Keys past IDEMPOTENCY_TTL, forgotten. */
  keys: number;
}

/**
 * Removes what uploads leave behind, each run:
 * - An `uploading` upload whose bytes are complete in the store (the process died between the
 *   last byte and recording it) is received: within one CLEANUP_INTERVAL, not at its expiry. One
 *   past its expiry otherwise becomes `expired` and loses its bytes and multipart parts.
 * - A `failed` upload's original is kept FAILED_RETENTION (for a requeue), then removed.
 * - A rejected, infected, expired or deleted upload settled for an interval (any request still
 *   writing to it is over) has its bytes and outputs removed again, store objects and `outputs`
 *   rows: what a crash between its transition and that removal left. Each upload once.
 * - Partial uploads (concatenation) that expired unused, or whose final was made but did not remove
 *   them (the process died), are removed.
 * Then the store sweeps its own expired leftovers, including those no record points to, the
 * Idempotency-Keys past IDEMPOTENCY_TTL are forgotten, the rate limit forgets addresses idle for
 * a minute (its table would otherwise keep every one), the temp files of processes on this
 * machine that ended are removed, and the database forgets the rows past their retention
 * (retention.ts).
 */
export async function cleanUpExpired(context: HookContext, options: CleanupOptions = {}): Promise<CleanupTotals> {
  const { db, storage, log, lifecycle, config } = context;
  const { now = new Date(), dryRun = false, onUpload } = options;
  const totals: CleanupTotals = { tempFiles: 0, expired: 0, received: 0, reclaimed: 0, parts: 0, swept: 0, keys: 0, uploadRows: 0, webhookRows: 0, jobRows: 0, eventRows: 0 };
  const done = (action: CleanupAction, upload: Upload) => {
    onUpload?.({ action, upload });
    totals[action]++;
  };
  for (let after: string | undefined; ; ) {
    const batch = await findUnfinishedUploads(db, 100, after);
    if (batch.length === 0) break;
    after = batch.at(-1)!.id;
    for (const upload of batch) {
      if (await arrivedComplete(context, upload, dryRun)) {
        done('received', upload);
        continue;
      }
      if (!upload.expires_at || upload.expires_at >= now) continue;
      if (!dryRun) {
        // The state first: a PATCH finishing meanwhile is refused its finish, and its bytes go too.
        const moved = await lifecycle.move(db, upload.id, 'expired', { from: ['uploading'], reason: `not finished before ${upload.expires_at.toISOString()}` });
        if (!moved.ok) continue;
        await storage.removeUpload(upload.id);
      }
      done('expired', upload);
    }
  }
  for (let after: string | undefined; ; ) {
    const batch = await findUploadsToReclaim(db, {
      settledBefore: new Date(now.getTime() - config.cleanupIntervalMs),
      failedBefore: new Date(now.getTime() - config.failedRetentionMs),
      limit: 100,
      after,
    });
    if (batch.length === 0) break;
    after = batch.at(-1)!.id;
    for (const upload of batch) {
      if (!dryRun) {
        await storage.removeUpload(upload.id);
        await deleteOutputs(db, upload.id);
        await markReclaimed(db, upload.id);
      }
      done('reclaimed', upload);
    }
  }
  if (dryRun) return totals;
  for (let batch = await findLeftoverParts(db, now, 100); batch.length > 0; batch = await findLeftoverParts(db, now, 100)) {
    await removeParts(context, batch.map((id) => ({ id })));
    totals.parts += batch.length;
  }
  totals.swept = await storage.sweepExpired();
  totals.keys = await deleteExpiredKeys(db);
  totals.tempFiles = await removeDeadProcessesTempFiles(log);
  await pruneUploadRates(db);
  const before = (ms: number) => new Date(now.getTime() - ms);
  const { retention } = config;
  Object.assign(
    totals,
    await applyRetentions(db, {
      uploads: before(retention.deletedUploadsMs),
      webhookMessages: before(retention.webhookMessagesMs),
      jobs: before(retention.jobsMs),
      events: before(retention.eventsMs),
    }),
  );
  if (Object.values(totals).some((n) => n > 0)) log.info(totals, 'cleanup');
  return totals;
}

/**
 * Whether an unfinished upload's bytes are all in the store, recorded `received` now (unless
 * `dryRun`): a tus upload whose process died before recording its last byte, or a presigned
 * POST whose object arrived (S3 never tells; Uppy calls no completion route after a POST). A
 * direct multipart upload is complete only when its client completes it.
 */
async function arrivedComplete(context: HookContext, upload: Upload, dryRun: boolean): Promise<boolean> {
  if (upload.protocol === 's3-post') return dryRun ? (await postedSize(context, upload)) !== undefined : finishPostUpload(context, upload);
  if (upload.protocol !== 'tus') return false;
  const stored = await context.storage.datastore.getUpload(upload.id).catch(() => undefined);
  if (!stored || stored.size === undefined || stored.offset !== stored.size) return false;
  // Refused: its own request recorded the finish meanwhile.
  return dryRun || (await uploadFinish(context, stored)).ok;
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
