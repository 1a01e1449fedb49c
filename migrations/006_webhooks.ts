import { sql, type Kysely } from 'kysely';

// Migrations take Kysely<unknown>: they must not depend on today's schema types.
export async function up(db: Kysely<unknown>): Promise<void> {
  // One row per upload event sent as a webhook: its body is built once, at the transition, so
  // every attempt at every URL sends the same bytes under the same webhook-id.
  await db.schema
    .createTable('webhook_messages')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('upload_id', 'text', (c) => c.notNull())
    .addColumn('seq', 'integer', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('body', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addForeignKeyConstraint('webhook_messages_event', ['upload_id', 'seq'], 'upload_events', ['upload_id', 'seq'], (c) => c.onDelete('cascade'))
    .addUniqueConstraint('webhook_messages_one_per_event', ['upload_id', 'seq'])
    .execute();

  // Webhook jobs are one per (message, URL), not one per (upload, kind): the old rule stays for
  // every other kind, as a partial unique index that `on conflict` names by its predicate.
  await db.schema
    .alterTable('jobs')
    .addColumn('webhook_id', 'text', (c) => c.references('webhook_messages.id').onDelete('cascade'))
    .addColumn('url', 'text')
    .execute();
  await db.schema.alterTable('jobs').dropConstraint('jobs_one_per_upload_and_kind').execute();
  await db.schema.createIndex('jobs_one_per_upload_and_kind').unique().on('jobs').columns(['upload_id', 'kind']).where(sql.ref('kind'), '<>', 'webhook').execute();
  await db.schema.createIndex('jobs_one_per_webhook_and_url').unique().on('jobs').columns(['webhook_id', 'url']).where(sql.ref('kind'), '=', 'webhook').execute();
  await db.schema
    .alterTable('jobs')
    .addCheckConstraint('jobs_webhook_has_message_and_url', sql`(kind = 'webhook') = (webhook_id is not null and url is not null)`)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.deleteFrom('jobs' as never).where(sql.ref('kind'), '=', 'webhook').execute();
  await db.schema.alterTable('jobs').dropConstraint('jobs_webhook_has_message_and_url').execute();
  await db.schema.dropIndex('jobs_one_per_webhook_and_url').execute();
  await db.schema.dropIndex('jobs_one_per_upload_and_kind').execute();
  await db.schema.alterTable('jobs').addUniqueConstraint('jobs_one_per_upload_and_kind', ['upload_id', 'kind']).execute();
  await db.schema.alterTable('jobs').dropColumn('url').dropColumn('webhook_id').execute();
  await db.schema.dropTable('webhook_messages').execute();
}
