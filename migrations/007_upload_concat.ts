import { sql, type Kysely } from 'kysely';

// Migrations take Kysely<unknown>: they must not depend on today's schema types.
export async function up(db: Kysely<unknown>): Promise<void> {
  // The tus concatenation extension. Partial uploads are pieces of a file, not uploads of their
  // own: they live here, never in `uploads`, so no listing, event, status or job ever sees one.
  await db.schema
    .createTable('upload_parts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('owner', 'text')
    .addColumn('size', 'bigint', (c) => c.notNull())
    // The final upload the part was taken into; null while unused.
    .addColumn('final_id', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('upload_parts_owner').on('upload_parts').columns(['owner', 'final_id']).execute();
  await db.schema.createIndex('upload_parts_expires').on('upload_parts').column('expires_at').execute();
  // A final upload's Upload-Concat as its creation request sent it (HEAD answers it back).
  await db.schema.alterTable('uploads').addColumn('upload_concat', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('uploads').dropColumn('upload_concat').execute();
  await db.schema.dropTable('upload_parts').execute();
}
