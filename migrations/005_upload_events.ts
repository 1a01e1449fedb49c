import { sql, type Kysely } from 'kysely';

// Migrations take Kysely<unknown>: they must not depend on today's schema types.
export async function up(db: Kysely<unknown>): Promise<void> {
  // One row per transition of an upload, numbered from 1 (its creation) per upload: feeds the
  // webhooks and the live stream (Last-Event-ID is a seq).
  await db.schema
    .createTable('upload_events')
    .addColumn('upload_id', 'text', (c) => c.notNull().references('uploads.id').onDelete('cascade'))
    .addColumn('seq', 'integer', (c) => c.notNull())
    .addColumn('from_status', 'text')
    .addColumn('to_status', 'text', (c) => c.notNull())
    .addColumn('reason', 'text')
    .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('upload_events_pkey', ['upload_id', 'seq'])
    .execute();
  await db.schema
    .alterTable('uploads')
    // The seq of the upload's latest event. The guarded update of a transition increments it, so
    // two transitions racing on one upload get different numbers under the row lock.
    .addColumn('event_seq', 'integer', (c) => c.notNull().defaultTo(0))
    // When cleanup made sure what an upload no longer keeps (bytes, outputs) is gone; null until then.
    .addColumn('reclaimed_at', 'timestamptz')
    .execute();
  // Uploads from before the log: their creation is known; the transitions since are not invented.
  await sql`insert into upload_events (upload_id, seq, from_status, to_status, at)
            select id, 1, null, 'uploading', created_at from uploads`.execute(db);
  await sql`update uploads set event_seq = 1`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('uploads').dropColumn('reclaimed_at').dropColumn('event_seq').execute();
  await db.schema.dropTable('upload_events').execute();
}
