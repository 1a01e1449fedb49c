import { sql, type RawBuilder } from 'kysely';
import type { Db } from './database.ts';

/**
 * What the database forgets, and when: the retentions that keep its tables bounded. Each is one
 * guarded statement run in batches (rows locked by another transaction are skipped, and taken at
 * the next run), so a table of any size is worked through without one long lock.
 * - the record of a `deleted` or `expired` upload whose leftovers were reclaimed before `uploads`
 *   (its events, jobs, outputs and webhook messages go with it), unless a job of it still runs;
 * - a webhook message created before `webhookMessages` none of whose deliveries is still queued or
 *   running (its given-up deliveries, which `npm run webhooks -- --resend` sends again, go with it);
 * - a job finished before `jobs`: done, or failed when no requeue can use it any more (its upload
 *   moved on from `failed`, or its bytes are gone); a failed delivery stays with its message;
 * - an upload event before `events`, but each upload's latest (the stream's Last-Event-ID) and
 *   those a webhook message still refers to.
 */
export interface RetentionCutoffs {
  uploads: Date;
  webhookMessages: Date;
  jobs: Date;
  events: Date;
}

export interface RetentionTotals {
  uploadRows: number;
  webhookRows: number;
  jobRows: number;
  eventRows: number;
}

const batchSize = 1000;

/** Runs `deleteBatch` until a batch deletes fewer than a full one; returns the rows deleted. */
async function inBatches(db: Db, deleteBatch: RawBuilder<unknown>): Promise<number> {
  let total = 0;
  for (;;) {
    const { numAffectedRows } = await deleteBatch.execute(db);
    const deleted = Number(numAffectedRows ?? 0n);
    total += deleted;
    if (deleted < batchSize) return total;
  }
}

/** One batch of the rows of `table` whose ids `select` picks. */
const byId = (table: 'uploads' | 'webhook_messages' | 'jobs', select: RawBuilder<unknown>) =>
  sql`delete from ${sql.table(table)} where id in (${select} limit ${batchSize} for update skip locked)`;

/** No job whose `column` is `id` is still queued or running. */
const noJobToRun = (column: 'upload_id' | 'webhook_id', id: RawBuilder<unknown>) =>
  sql`not exists (select 1 from jobs j where j.${sql.ref(column)} = ${id} and j.status in ('queued', 'running'))`;

export async function applyRetentions(db: Db, cutoffs: RetentionCutoffs): Promise<RetentionTotals> {
  const uploadRows = await inBatches(
    db,
    byId('uploads', sql`select u.id from uploads u where u.status in ('deleted', 'expired') and u.reclaimed_at < ${cutoffs.uploads} and ${noJobToRun('upload_id', sql.ref('u.id'))}`),
  );
  const webhookRows = await inBatches(
    db,
    byId('webhook_messages', sql`select m.id from webhook_messages m where m.created_at < ${cutoffs.webhookMessages} and ${noJobToRun('webhook_id', sql.ref('m.id'))}`),
  );
  const jobRows = await inBatches(
    db,
    byId(
      'jobs',
      sql`select j.id from jobs j
           where j.updated_at < ${cutoffs.jobs}
             and (j.status = 'done'
               or (j.status = 'failed' and j.kind <> 'webhook'
                   and exists (select 1 from uploads u where u.id = j.upload_id and (u.status <> 'failed' or u.reclaimed_at is not null))))`,
    ),
  );
  const eventRows = await inBatches(
    db,
    sql`delete from upload_events e using (
          select e.upload_id, e.seq from upload_events e join uploads u on u.id = e.upload_id
           where e.at < ${cutoffs.events} and e.seq < u.event_seq
             and not exists (select 1 from webhook_messages m where m.upload_id = e.upload_id and m.seq = e.seq)
           limit ${batchSize} for update of e skip locked) old
         where e.upload_id = old.upload_id and e.seq = old.seq`,
  );
  return { uploadRows, webhookRows, jobRows, eventRows };
}
