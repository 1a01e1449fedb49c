import type { Db } from './database.ts';
import type { UploadEventRow } from './schema.ts';

/**
 * Reading the upload event log (`upload_events`, written with each transition by uploadStates.ts
 * for the upload lifecycle) and the two NOTIFY channels an event stream follows. Payloads carry ids and
 * numbers only: NOTIFY payloads must stay under 8000 bytes.
 */

/** `{"id","seq"}` of each transition, sent in the transition's transaction. */
export const uploadEventsChannel = 'upload_events';

/** `{"id","offset","size"}` as bytes arrive, `{"id","percent"}` as a video job runs; each sent by the write that records it. */
export const uploadProgressChannel = 'upload_progress';

export type UploadProgress = { offset: number; size: number | null } | { percent: number };

/** The events of an upload after `seq`, oldest first, at most `limit`. */
export async function listEventsAfter(db: Db, uploadId: string, seq: number, limit: number): Promise<UploadEventRow[]> {
  return db.selectFrom('upload_events').selectAll().where('upload_id', '=', uploadId).where('seq', '>', seq).orderBy('seq').limit(limit).execute();
}
