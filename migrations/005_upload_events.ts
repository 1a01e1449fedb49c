import { sql, type Kysely } from 'kysely';

// THROWAWAY (branch livestatus): the table exactly as in the upload-events contract, so the
// event stream can be built and tested before branch `lifecycle` lands its migration 005. The
// trigger stands in for lifecycle's transition function (it writes the same rows and NOTIFY);
// this file is dropped in favour of lifecycle's when that branch is merged.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('upload_events')
    .addColumn('upload_id', 'text', (c) => c.notNull())
    .addColumn('seq', 'integer', (c) => c.notNull())
    .addColumn('from_status', 'text')
    .addColumn('to_status', 'text', (c) => c.notNull())
    .addColumn('reason', 'text')
    .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('upload_events_pkey', ['upload_id', 'seq'])
    .execute();
  await sql`
    create function upload_events_record() returns trigger language plpgsql as $$
    declare next_seq integer;
    begin
      if tg_op = 'UPDATE' and new.status is not distinct from old.status then return new; end if;
      select coalesce(max(seq), 0) + 1 into next_seq from upload_events where upload_id = new.id;
      insert into upload_events (upload_id, seq, from_status, to_status, reason)
        values (new.id, next_seq, case when tg_op = 'UPDATE' then old.status end, new.status, new.reason);
      perform pg_notify('upload_events', json_build_object('id', new.id, 'seq', next_seq)::text);
      return new;
    end $$`.execute(db);
  await sql`create trigger upload_events_record after insert or update of status on uploads for each row execute function upload_events_record()`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop trigger upload_events_record on uploads`.execute(db);
  await sql`drop function upload_events_record()`.execute(db);
  await db.schema.dropTable('upload_events').execute();
}
