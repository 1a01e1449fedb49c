import { sql, type Kysely } from 'kysely';

// Migrations take Kysely<unknown>: they must not depend on today's schema types.
export async function up(db: Kysely<unknown>): Promise<void> {
  // Idempotency-Key on creations: which upload a key of an owner's made. The unique index is the
  // rule across instances: of two creations with one key, the second's insert waits for the
  // first's transaction and then finds the key taken.
  await db.schema
    .createTable('idempotency_keys')
    .addColumn('owner', 'text')
    .addColumn('key', 'text', (c) => c.notNull())
    // What the creation asked for (length, metadata, …): a retry must ask for the same.
    .addColumn('fingerprint', 'text', (c) => c.notNull())
    .addColumn('upload_id', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .execute();
  // The key first: lookups compare owners with `is not distinct from`, which an index cannot search.
  // The server running open has no owners: a null owner is one owner, not a different one each time.
  await db.schema.createIndex('idempotency_keys_owner_key').on('idempotency_keys').columns(['key', 'owner']).unique().nullsNotDistinct().execute();
  await db.schema.createIndex('idempotency_keys_expires').on('idempotency_keys').column('expires_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('idempotency_keys').execute();
}
