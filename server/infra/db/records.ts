import { sql } from 'kysely';
import type { Db } from './database.ts';
import type { MediaMetadata, Output, Upload, UploadStatus } from './schema.ts';
import { uploadProgressChannel } from './uploadEventLog.ts';
import { statusesWhere } from './uploadStatusFacts.ts';

/**
 * Every read of `uploads` and `outputs`, and the writes that change no upload's state (those
 * are in uploadStates.ts). Each function takes the database or a transaction, so a caller can
 * group writes.
 */

export async function findUpload(db: Db, id: string): Promise<Upload | undefined> {
  return db.selectFrom('uploads').selectAll().where('id', '=', id).executeTakeFirst();
}

/** The upload if `owner` may see it: theirs, or, for nobody in particular (open mode), one without an owner. */
export async function findOwnUpload(db: Db, id: string, owner: string | null): Promise<Upload | undefined> {
  return db
    .selectFrom('uploads')
    .selectAll()
    .where('id', '=', id)
    .where((eb) => (owner === null ? eb('owner', 'is', null) : eb('owner', '=', owner)))
    .executeTakeFirst();
}

/**
 * One page of an owner's uploads, newest first, after the upload `after` (the last of the page
 * before; compared by its own row, so timestamps keep the database's precision).
 */
export async function listOwnUploads(
  db: Db,
  owner: string | null,
  page: { limit: number; after: string | undefined; status: UploadStatus | undefined },
): Promise<Upload[]> {
  let query = db
    .selectFrom('uploads')
    .selectAll()
    .where((eb) => (owner === null ? eb('owner', 'is', null) : eb('owner', '=', owner)))
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(page.limit);
  if (page.status) query = query.where('status', '=', page.status);
  const after = page.after;
  if (after) {
    query = query.where(
      (eb) => sql<boolean>`(${eb.ref('created_at')}, ${eb.ref('id')}) < (select created_at, id from uploads where id = ${after})`,
    );
  }
  return query.execute();
}

/**
 * Progress only moves forward: a late write from a slow request never rewinds it. A move is
 * told on the progress channel by the same statement, for the event streams of every instance.
 */
export async function recordOffset(db: Db, id: string, offset: number): Promise<void> {
  await db
    .with('moved', (qb) =>
      qb
        .updateTable('uploads')
        .set({ offset, updated_at: sql`now()` })
        .where('id', '=', id)
        .where('status', '=', 'uploading')
        .where('offset', '<', offset)
        .returning(['id', 'offset', 'size']),
    )
    .selectFrom('moved')
    .select(sql`pg_notify(${uploadProgressChannel}, json_build_object('id', id, 'offset', "offset", 'size', size)::text)`.as('notified'))
    .execute();
}

export async function recordDeclaredSize(db: Db, id: string, size: number): Promise<void> {
  await db.updateTable('uploads').set({ size, updated_at: sql`now()` }).where('id', '=', id).where('size', 'is', null).execute();
}

/** Forgets an upload's outputs (it was deleted, or keeps none). */
export async function deleteOutputs(db: Db, uploadId: string): Promise<void> {
  await db.deleteFrom('outputs').where('upload_id', '=', uploadId).execute();
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

/** One page of the uploads still `uploading`, by id, after the id `after` (the last of the page before). */
export async function findUnfinishedUploads(db: Db, limit: number, after?: string): Promise<Upload[]> {
  let query = db.selectFrom('uploads').selectAll().where('status', '=', 'uploading').orderBy('id').limit(limit);
  if (after) query = query.where('id', '>', after);
  return query.execute();
}

/**
 * One page (by id, after `after`) of the uploads whose stored bytes and outputs cleanup has yet to
 * make sure of: those in a state that keeps nothing, settled before `settledBefore`, and the failed
 * ones past their retention (failed before `failedBefore`).
 */
export async function findUploadsToReclaim(
  db: Db,
  page: { settledBefore: Date; failedBefore: Date; limit: number; after?: string },
): Promise<Upload[]> {
  let query = db
    .selectFrom('uploads')
    .selectAll()
    .where('reclaimed_at', 'is', null)
    .where((eb) =>
      eb.or([
        eb.and([eb('status', 'in', statusesWhere((facts) => !facts.keepsBytes)), eb('updated_at', '<', page.settledBefore)]),
        eb.and([eb('status', '=', 'failed'), eb('updated_at', '<', page.failedBefore)]),
      ]),
    )
    .orderBy('id')
    .limit(page.limit);
  if (page.after) query = query.where('id', '>', page.after);
  return query.execute();
}

/** Notes that cleanup removed what the upload no longer keeps, so it is not looked at again. */
export async function markReclaimed(db: Db, id: string): Promise<void> {
  await db.updateTable('uploads').set({ reclaimed_at: sql`now()` }).where('id', '=', id).execute();
}

/** The ids of every upload in `status`, oldest first. */
export async function listUploadIdsInStatus(db: Db, status: UploadStatus): Promise<string[]> {
  const rows = await db.selectFrom('uploads').select('id').where('status', '=', status).orderBy('created_at').orderBy('id').execute();
  return rows.map((row) => row.id);
}

/** The job progress shown in the status API, per kind; webhook deliveries are listed on their own. */
export async function listJobs(db: Db, uploadId: string) {
  return db
    .selectFrom('jobs')
    .select(['kind', 'status', 'attempts', 'waits', 'waiting_since', 'progress', 'last_error', 'result'])
    .where('upload_id', '=', uploadId)
    .where('kind', '<>', 'webhook')
    .orderBy('id')
    .execute();
}

/** The upload's webhook deliveries, oldest event first: where, which event, how far. */
export async function listWebhookDeliveries(db: Db, uploadId: string) {
  return db
    .selectFrom('jobs')
    .innerJoin('webhook_messages', 'webhook_messages.id', 'jobs.webhook_id')
    .select(['jobs.url', 'webhook_messages.type', 'webhook_messages.seq', 'jobs.status', 'jobs.attempts', 'jobs.waits', 'jobs.last_error'])
    .where('jobs.upload_id', '=', uploadId)
    .orderBy('webhook_messages.seq')
    .orderBy('jobs.id')
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

/** A direct upload's multipart UploadId, once the bucket started it. */
export async function recordMultipartUploadId(db: Db, id: string, uploadId: string): Promise<void> {
  await db.updateTable('uploads').set({ multipart_upload_id: uploadId, updated_at: sql`now()` }).where('id', '=', id).execute();
}

/**
 * Records a ready upload's outputs made again (new ones added, the rest replaced) and its media
 * facts made with them (e.g. a `thumbhash` it lacked); false, recording nothing, when it is no longer ready.
 */
export async function saveOutputsOfReady(trx: Db, uploadId: string, outputs: NewOutput[], media: MediaMetadata): Promise<boolean> {
  // The row lock holds off a concurrent delete until these rows are in, or sees it done.
  const row = await trx.selectFrom('uploads').select('status').where('id', '=', uploadId).forUpdate().executeTakeFirst();
  if (row?.status !== 'ready') return false;
  await saveOutputs(trx, uploadId, outputs);
  await trx.updateTable('uploads').set({ media: sql`${JSON.stringify(media)}::jsonb`, updated_at: sql`now()` }).where('id', '=', uploadId).execute();
  return true;
}
