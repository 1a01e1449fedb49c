import { sql } from 'kysely';
import type { Db } from './database.ts';
import { quotaRefusal, type Quota, type QuotaRefusal } from './quotas.ts';
import { uploadEventsChannel } from './uploadEventLog.ts';
import type { MediaMetadata, NewUpload, Upload, UploadEventRow, UploadStatus } from './schema.ts';

/**
 * The statements that write `uploads.status`, each with its `upload_events` row and NOTIFY. Only
 * hooks/uploadLifecycle.ts calls them (test/layers.test.ts checks): it holds the rules, these
 * only the SQL.
 */

// Every process LISTENing on it hears each transition once its transaction commits (the name
// lives with the log's readers, since only the lifecycle may import this file).
export { uploadEventsChannel };

/** The columns a transition may set beside status and reason. */
export interface TransitionColumns {
  size?: number;
  offset?: number;
  detected_type?: string | null;
  sha256?: string | null;
  media?: MediaMetadata | null;
  /** Stamped with the database's now(). */
  finished_at?: 'now';
  ready_at?: 'now';
  expires_at?: null;
}

/**
 * The payload names the event, never carries it (NOTIFY payloads must stay under 8000 bytes):
 * `{"id":"<upload id>","seq":<n>}`.
 */
const notifyEvent = sql`pg_notify(${uploadEventsChannel}, '{"id":' || to_json(event.upload_id)::text || ',"seq":' || event.seq || '}')`;

/**
 * Inserts a new upload, within its owner's quota when it has one (quotas.ts decides, under the
 * owner's lock for the rest of the transaction `trx`). Returns the refusal instead of inserting
 * when it would not fit. A final upload (concatenation) claims its partial uploads here, in the same
 * transaction: it replaces the one upload in flight they counted as, and their bytes become its
 * own; 'parts taken' when one of them is not the owner's unclaimed partial any more.
 */
export async function insertUpload(trx: Db, upload: NewUpload, quota?: Quota, parts: readonly string[] = []): Promise<QuotaRefusal | 'parts taken' | undefined> {
  const bytes = Number(upload.size ?? 0);
  const refusal = await quotaRefusal(trx, quota, upload.owner, parts.length > 0 ? { kind: 'final', bytes, parts } : { kind: 'upload', bytes });
  if (refusal) return refusal;
  if (parts.length > 0 && !(await claimParts(trx, upload.id, upload.owner ?? null, parts))) return 'parts taken';
  await trx.insertInto('uploads').values(upload).execute();
  return undefined;
}

/**
 * One guarded statement: gives every part to the final, or none when one is not the owner's
 * unclaimed partial (a final racing for it locked it first and took it).
 */
async function claimParts(trx: Db, finalId: string, owner: string | null, parts: readonly string[]): Promise<boolean> {
  const { numAffectedRows } = await sql`
    with free as (
      select id from upload_parts
       where id = any(${[...parts]}::text[]) and final_id is null and owner is not distinct from ${owner}
       for update
    )
    update upload_parts set final_id = ${finalId}
     where id in (select id from free) and (select count(*) from free) = ${parts.length}`.execute(trx);
  return Number(numAffectedRows) === parts.length;
}

/** Records a created upload's first event (seq 1, null → its status) and announces it. */
export async function recordCreation(trx: Db, upload: Pick<NewUpload, 'id' | 'status'>): Promise<UploadEventRow> {
  const { rows } = await sql<UploadEventRow & { notified: unknown }>`
    with event as (
      insert into upload_events (upload_id, seq, from_status, to_status) values (${upload.id}, 1, null, ${upload.status})
      returning *)
    select event.*, ${notifyEvent} as notified from event`.execute(trx);
  const { notified: _, ...event } = rows[0]!;
  return event;
}

/**
 * One guarded statement: moves the upload to `to` only from one of `from`, numbers the event
 * (event_seq + 1, under the row lock the update holds), appends it to upload_events and
 * NOTIFYs it. Undefined when the upload was in another state (or is gone): nothing changed.
 * `old` locks the row first, so the state moved from is the one the update replaced.
 */
export async function moveUpload(
  trx: Db,
  id: string,
  from: readonly UploadStatus[],
  to: UploadStatus,
  reason: string | null,
  columns: TransitionColumns,
): Promise<{ upload: Upload; event: UploadEventRow } | undefined> {
  const sets = Object.entries(columns).map(([column, value]) => {
    if (value === 'now') return sql`${sql.ref(column)} = now()`;
    if (column === 'media') return sql`media = ${value === null ? null : JSON.stringify(value)}::jsonb`;
    return sql`${sql.ref(column)} = ${value}`;
  });
  const { rows } = await sql<Upload & { from_status: UploadStatus; event: UploadEventRow; notified: unknown }>`
    with old as (
      select id, status from uploads where id = ${id} and status = any(${from}::text[]) for update
    ), moved as (
      update uploads
         set status = ${to}, reason = ${reason}, ${sql.join([...sets, sql`event_seq = uploads.event_seq + 1`, sql`updated_at = now()`])}
        from old
       where uploads.id = old.id
      returning uploads.*, old.status as from_status
    ), event as (
      insert into upload_events (upload_id, seq, from_status, to_status, reason)
      select id, event_seq, from_status, status, reason from moved
      returning *
    )
    select moved.*, to_json(event.*) as event, ${notifyEvent} as notified from moved join event on event.upload_id = moved.id`.execute(trx);
  const row = rows[0];
  if (!row) return undefined;
  const { event, from_status: _from, notified: _notified, ...upload } = row;
  // to_json() gives the time as text.
  return { upload, event: { ...event, at: new Date(event.at) } };
}

/** An upload's events after `afterSeq`, in order (for a stream resuming from Last-Event-ID). */
export async function listUploadEvents(db: Db, uploadId: string, afterSeq = 0): Promise<UploadEventRow[]> {
  return db.selectFrom('upload_events').selectAll().where('upload_id', '=', uploadId).where('seq', '>', afterSeq).orderBy('seq').execute();
}
