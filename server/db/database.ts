import fs from 'node:fs/promises';
import path from 'node:path';
import { Kysely, Migrator, PostgresDialect } from 'kysely';
import pg from 'pg';
import { migrations } from '../../migrations/index.ts';
import type { Logger } from '../log.ts';
import { createPool, listenWithReconnect } from './pgConnections.ts';
import { pgliteDialect } from './pgliteDialect.ts';
import type { Database } from './schema.ts';

export type Db = Kysely<Database>;

export interface OpenDatabase {
  db: Db;
  /** `postgres` shares state with other processes; `pglite` lives in this process only. */
  kind: 'postgres' | 'pglite';
  describe: string;
  /**
   * LISTEN on a channel; `onNotify` gets each notification's payload. A connection to a
   * Postgres server that dies is reconnected; `onResubscribed` is told, as notifications may
   * have been missed meanwhile. Returns the function that stops listening.
   */
  listen(channel: string, onNotify: (payload: string) => void, onResubscribed: () => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

const INT8 = 20;
const NUMERIC = 1700;

/** A Postgres server when `databaseUrl` is set, else PGlite under `dataDir/db`. */
export async function openDatabase(options: { databaseUrl: string | undefined; dataDir: string }, log: Logger): Promise<OpenDatabase> {
  if (options.databaseUrl) {
    // Sizes and offsets are bigint columns; pg hands them back as strings unless told.
    const types = { getTypeParser: (oid: number, format?: 'text' | 'binary') => (oid === INT8 || oid === NUMERIC ? Number : pg.types.getTypeParser(oid, format)) };
    // An instance's budget is 10 connections: 9 pooled, and its lock session (server/lockSession.ts).
    const pool = createPool({ connectionString: options.databaseUrl, max: 9, types }, log, 'records');
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    const url = new URL(options.databaseUrl);
    const databaseUrl = options.databaseUrl;
    const listen = async (channel: string, onNotify: (payload: string) => void, onResubscribed: () => void) => {
      // LISTEN needs a connection of its own that stays open, outside the pool.
      const subscription = await listenWithReconnect(databaseUrl, channel, onNotify, onResubscribed, log);
      return () => subscription.stop();
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
  // In this process: its connection cannot die, so there is never anything to catch up on.
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
