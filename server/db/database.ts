import fs from 'node:fs/promises';
import path from 'node:path';
import { Kysely, Migrator, PostgresDialect } from 'kysely';
import pg from 'pg';
import { migrations } from '../../migrations/index.ts';
import type { Logger } from '../log.ts';
import { pgliteDialect } from './pgliteDialect.ts';
import type { Database } from './schema.ts';

export type Db = Kysely<Database>;

export interface OpenDatabase {
  db: Db;
  /** `postgres` shares state with other processes; `pglite` lives in this process only. */
  kind: 'postgres' | 'pglite';
  describe: string;
  /** LISTEN on a channel; `onNotify` gets each notification's payload. Returns the function that stops listening. */
  listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

const INT8 = 20;
const NUMERIC = 1700;

/** A Postgres server when `databaseUrl` is set, else PGlite under `dataDir/db`. */
export async function openDatabase(options: { databaseUrl: string | undefined; dataDir: string }): Promise<OpenDatabase> {
  if (options.databaseUrl) {
    // Sizes and offsets are bigint columns; pg hands them back as strings unless told.
    const types = { getTypeParser: (oid: number, format?: 'text' | 'binary') => (oid === INT8 || oid === NUMERIC ? Number : pg.types.getTypeParser(oid, format)) };
    // An instance's budget is 10 connections: 9 pooled, and its lock session (server/lockSession.ts).
    const pool = new pg.Pool({ connectionString: options.databaseUrl, max: 9, types });
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    const url = new URL(options.databaseUrl);
    const listen = async (channel: string, onNotify: (payload: string) => void) => {
      // LISTEN needs a connection of its own that stays open, outside the pool.
      const client = new pg.Client({ connectionString: options.databaseUrl });
      client.on('error', () => undefined);
      await client.connect();
      client.on('notification', (message) => onNotify(message.payload ?? ''));
      await client.query(`listen ${client.escapeIdentifier(channel)}`);
      return () => client.end();
    };
    return { db, kind: 'postgres', describe: `postgres ${url.host}${url.pathname}`, listen, close: () => db.destroy() };
  }
  const { PGlite, types } = await import('@electric-sql/pglite');
  const dir = path.join(options.dataDir, 'db');
  await fs.mkdir(dir, { recursive: true });
  // Small buffers: the embedded database holds a few rows per upload, and the defaults cost ~130 MB of RSS.
  const postgresqlconf = ['shared_buffers=16MB', 'wal_buffers=1MB', 'work_mem=2MB', 'maintenance_work_mem=8MB'];
  const client = await PGlite.create({ dataDir: dir, postgresqlconf, parsers: { [types.INT8]: Number, [types.NUMERIC]: Number } });
  const db = new Kysely<Database>({ dialect: pgliteDialect(client) });
  const listen = async (channel: string, onNotify: (payload: string) => void) => {
    // Through Kysely's connection, so LISTEN waits its turn and never lands inside a transaction.
    const stop = await db.connection().execute(() => client.listen(channel, onNotify));
    return () => stop();
  };
  return { db, kind: 'pglite', describe: `pglite ${dir}`, listen, close: () => db.destroy() };
}

/** Brings the schema up to date; safe to run from several processes at once (Kysely locks). */
export async function migrateToLatest(db: Db, log?: Logger): Promise<void> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
  const { error, results } = await migrator.migrateToLatest();
  for (const r of results ?? []) log?.info({ migration: r.migrationName, status: r.status }, 'migration');
  if (error) throw error instanceof Error ? error : new Error(String(error));
}
