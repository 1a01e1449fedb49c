import type { Kysely } from 'kysely';

// Migrations take Kysely<unknown>: they must not depend on today's schema types.
export async function up(db: Kysely<unknown>): Promise<void> {
  // One token bucket per client address, shared by every instance on this database.
  await db.schema
    .createTable('upload_rates')
    .addColumn('address', 'text', (c) => c.primaryKey())
    .addColumn('tokens', 'double precision', (c) => c.notNull())
    .addColumn('refilled_at', 'timestamptz', (c) => c.notNull())
    .addColumn('allowed', 'boolean', (c) => c.notNull())
    .execute();
  // The cleanup job forgets buckets that have refilled.
  await db.schema.createIndex('upload_rates_refilled').on('upload_rates').column('refilled_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('upload_rates').execute();
}
