import { sql } from 'kysely';
import type { Db } from './database.ts';
import { enqueueJob } from './jobQueue.ts';
import type { MediaMetadata, NewUpload, Output, Upload, UploadStatus } from './schema.ts';

/**
 * Every read and write of `uploads` and `outputs`. Each function takes the database or
 * a transaction, so a caller can group writes (finishing an upload and queueing its job).
 */

export async function createUpload(db: Db, upload: NewUpload): Promise<void> {
  await db.insertInto('uploads').values(upload).execute();
}

export async function findUpload(db: Db, id: string): Promise<Upload | undefined> {
  return db.selectFrom('uploads').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Progress only moves forward: a late write from a slow request never rewinds it. */
export async function recordOffset(db: Db, id: string, offset: number): Promise<void> {
  await db
    .updateTable('uploads')
    .set({ offset, updated_at: sql`now()` })
    .where('id', '=', id)
    .where('status', '=', 'uploading')
    .where('offset', '<', offset)
    .execute();
}

export async function recordDeclaredSize(db: Db, id: string, size: number): Promise<void> {
  await db.updateTable('uploads').set({ size, updated_at: sql`now()` }).where('id', '=', id).where('size', 'is', null).execute();
}

/**
 * The last byte arrived: the upload becomes `received` and its inspect job is queued in the
 * same transaction, so a crash between the two cannot leave a received upload nobody inspects.
 * Returns false when the upload was already past `uploading` (a repeated finish).
 */
export async function receiveUpload(db: Db, id: string, size: number, maxAttempts: number): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const updated = await trx
      .updateTable('uploads')
      .set({ status: 'received', size, offset: size, finished_at: sql`now()`, updated_at: sql`now()`, expires_at: null })
      .where('id', '=', id)
      .where('status', '=', 'uploading')
      .executeTakeFirst();
    if (updated.numUpdatedRows === 0n) return false;
    await enqueueJob(trx, id, 'inspect', maxAttempts);
    return true;
  });
}

export interface StatusChange {
  status: UploadStatus;
  reason?: string | null;
  detected_type?: string | null;
  sha256?: string | null;
  media?: MediaMetadata | null;
}

/** Moves an upload to a new state, only from one of `from`; returns whether it moved. */
export async function changeStatus(db: Db, id: string, from: UploadStatus[], change: StatusChange): Promise<boolean> {
  const { media, ...rest } = change;
  const result = await db
    .updateTable('uploads')
    .set({
      ...rest,
      ...(media === undefined ? {} : { media: JSON.stringify(media) }),
      ...(change.status === 'ready' ? { ready_at: sql`now()` } : {}),
      updated_at: sql`now()`,
    })
    .where('id', '=', id)
    .where('status', 'in', from)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/**
 * Moves an upload to `status` from one of `from` and returns its row in one statement;
 * undefined when it was in another state (or is gone).
 */
export async function takeUpload(db: Db, id: string, from: UploadStatus[], status: UploadStatus): Promise<Upload | undefined> {
  return db
    .updateTable('uploads')
    .set({ status, updated_at: sql`now()` })
    .where('id', '=', id)
    .where('status', 'in', from)
    .returningAll()
    .executeTakeFirst();
}

export async function listOutputs(db: Db, uploadId: string): Promise<Output[]> {
  return db.selectFrom('outputs').selectAll().where('upload_id', '=', uploadId).orderBy('name').execute();
}

/** How many uploads are in each state (for /metrics). */
export async function countUploadsByStatus(db: Db): Promise<{ status: UploadStatus; count: number }[]> {
  return db
    .selectFrom('uploads')
    .select((eb) => ['status', eb.fn.countAll<number>().as('count')])
    .groupBy('status')
    .execute();
}

/** Unfinished uploads whose time ran out, oldest first. */
export async function findExpiredUploads(db: Db, now: Date, limit: number): Promise<Upload[]> {
  return db
    .selectFrom('uploads')
    .selectAll()
    .where('status', '=', 'uploading')
    .where('expires_at', '<', now)
    .orderBy('expires_at')
    .limit(limit)
    .execute();
}

/** The job progress shown in the status API, per kind. */
export async function listJobs(db: Db, uploadId: string) {
  return db
    .selectFrom('jobs')
    .select(['kind', 'status', 'attempts', 'progress', 'last_error', 'result'])
    .where('upload_id', '=', uploadId)
    .orderBy('id')
    .execute();
}

export interface NewOutput {
  name: string;
  contentType: string;
  size: number;
  width: number | null;
  height: number | null;
  storageKey: string;
}

/** Records an upload's outputs; a retried job replaces its earlier rows instead of adding more. */
export async function saveOutputs(db: Db, uploadId: string, outputs: NewOutput[]): Promise<void> {
  if (outputs.length === 0) return;
  await db
    .insertInto('outputs')
    .values(
      outputs.map((o) => ({
        upload_id: uploadId,
        name: o.name,
        content_type: o.contentType,
        size: o.size,
        width: o.width,
        height: o.height,
        storage_key: o.storageKey,
      })),
    )
    .onConflict((oc) =>
      oc.columns(['upload_id', 'name']).doUpdateSet((eb) => ({
        content_type: eb.ref('excluded.content_type'),
        size: eb.ref('excluded.size'),
        width: eb.ref('excluded.width'),
        height: eb.ref('excluded.height'),
        storage_key: eb.ref('excluded.storage_key'),
        created_at: sql`now()`,
      })),
    )
    .execute();
}
