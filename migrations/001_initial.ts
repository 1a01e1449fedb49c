import { sql, type Kysely } from 'kysely';

// Migrations take Kysely<unknown>: they must not depend on today's schema types.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('uploads')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('owner', 'text')
    .addColumn('filename', 'text')
    .addColumn('safe_filename', 'text', (c) => c.notNull())
    .addColumn('claimed_type', 'text')
    .addColumn('detected_type', 'text')
    .addColumn('size', 'bigint')
    .addColumn('offset', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('sha256', 'text')
    .addColumn('storage_key', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('reason', 'text')
    .addColumn('tus_metadata', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('media', 'jsonb')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz')
    .addColumn('finished_at', 'timestamptz')
    .addColumn('ready_at', 'timestamptz')
    .addCheckConstraint(
      'uploads_status_known',
      sql`status in ('uploading','received','inspecting','processing','ready','rejected','infected','failed','expired','deleted')`,
    )
    .execute();
  // The cleanup job looks for unfinished uploads past their expiry.
  await db.schema.createIndex('uploads_expiring').on('uploads').column('expires_at').where(sql.ref('status'), '=', 'uploading').execute();

  await db.schema
    .createTable('jobs')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('upload_id', 'text', (c) => c.notNull().references('uploads.id').onDelete('cascade'))
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull().defaultTo('queued'))
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('max_attempts', 'integer', (c) => c.notNull())
    .addColumn('run_after', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('lease_holder', 'text')
    .addColumn('lease_expires_at', 'timestamptz')
    .addColumn('last_error', 'text')
    .addColumn('progress', 'real')
    .addColumn('result', 'jsonb')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('jobs_one_per_upload_and_kind', ['upload_id', 'kind'])
    .addCheckConstraint('jobs_status_known', sql`status in ('queued','running','done','failed')`)
    .execute();
  // Claiming scans only the jobs that can run.
  await db.schema.createIndex('jobs_runnable').on('jobs').columns(['run_after', 'id']).where(sql.ref('status'), 'in', ['queued', 'running']).execute();

  await db.schema
    .createTable('outputs')
    .addColumn('upload_id', 'text', (c) => c.notNull().references('uploads.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('content_type', 'text', (c) => c.notNull())
    .addColumn('size', 'bigint', (c) => c.notNull())
    .addColumn('width', 'integer')
    .addColumn('height', 'integer')
    .addColumn('storage_key', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('outputs_pkey', ['upload_id', 'name'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('outputs').execute();
  await db.schema.dropTable('jobs').execute();
  await db.schema.dropTable('uploads').execute();
}
