import type { Kysely } from 'kysely';

// Migrations take Kysely<unknown>: they must not depend on today's schema types.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('jobs')
    // Runs that found a service the job needs (clamd) unreachable: they do not count as attempts.
    .addColumn('waits', 'integer', (c) => c.notNull().defaultTo(0))
    // When the current wait for that service began; null while the job is not waiting.
    .addColumn('waiting_since', 'timestamptz')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('jobs').dropColumn('waiting_since').dropColumn('waits').execute();
}
