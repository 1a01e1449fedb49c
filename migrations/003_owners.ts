import { sql, type Kysely } from 'kysely';

// Migrations take Kysely<unknown>: they must not depend on today's schema types.
export async function up(db: Kysely<unknown>): Promise<void> {
  // What the creator's token (and the app's AUTHORIZE_URL answer) narrowed the type policy to.
  await db.schema.alterTable('uploads').addColumn('limits', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`)).execute();
  // An owner's listing, newest first, and the quota counts per owner.
  await db.schema.createIndex('uploads_by_owner').on('uploads').columns(['owner', 'created_at desc', 'id desc']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('uploads_by_owner').execute();
  await db.schema.alterTable('uploads').dropColumn('limits').execute();
}
