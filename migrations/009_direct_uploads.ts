import type { Kysely } from 'kysely';

// Migrations take Kysely<unknown>: they must not depend on today's schema types.
export async function up(db: Kysely<unknown>): Promise<void> {
  // Direct-to-S3 uploads: how the bytes come (tus through this server, or straight to the bucket
  // by a multipart upload or a presigned POST), and the bucket's multipart upload id for one.
  await db.schema.alterTable('uploads').addColumn('protocol', 'text', (c) => c.notNull().defaultTo('tus')).execute();
  await db.schema.alterTable('uploads').addColumn('multipart_upload_id', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('uploads').dropColumn('multipart_upload_id').execute();
  await db.schema.alterTable('uploads').dropColumn('protocol').execute();
}
