import type { Db } from './database.ts';
import type { UploadEvent } from './schema.ts';

/**
 * Reading the upload event log (`upload_events`, written by the upload lifecycle with each
 * transition) and the two NOTIFY channels an event stream follows. Payloads carry ids and
 * numbers only: NOTIFY payloads must stay under 8000 bytes.
 */

/** `{"id","seq"}` of each transition, sent in the transition's transaction. */
export const uploadEventsChannel = 'upload_events';

/** `{"id","offset","size"}` as bytes arrive, `{"id","percent"}` as a video job runs; each sent by the write that records it. */
export const uploadProgressChannel = 'upload_progress';

export type UploadProgress = { offset: number; size: number | null } | { percent: number };

/** The events of an upload after `seq`, oldest first, at most `limit`. */
export async function listEventsAfter(db: Db, uploadId: string, seq: number, limit: number): Promise<UploadEvent[]> {
  return db.selectFrom('upload_events').selectAll().where('upload_id', '=', uploadId).where('seq', '>', seq).orderBy('seq').limit(limit).execute();
}

/** The sequence number of an upload's latest event; 0 when it has none. */
export async function lastEventSeq(db: Db, uploadId: string): Promise<number> {
  const row = await db
    .selectFrom('upload_events')
    .select((eb) => eb.fn.max('seq').as('seq'))
    .where('upload_id', '=', uploadId)
    .executeTakeFirst();
  return row?.seq ?? 0;
}
