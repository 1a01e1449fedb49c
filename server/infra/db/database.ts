import { Kysely, Migrator, PostgresDialect } from 'kysely';
import pg from 'pg';
import { migrations } from '../../../migrations/index.ts';
import { DedicatedConnection } from '../pg/dedicatedConnection.ts';
import { createPool } from '../pg/pool.ts';
import { defaultDatabaseHeartbeat, type DatabaseHeartbeat } from '../settings/config.ts';
import type { Logger } from '../settings/log.ts';
import { openEmbeddedPostgres } from './embeddedPostgres.ts';
import type { Database } from './schema.ts';

export type Db = Kysely<Database>;

export interface OpenDatabase {
  db: Db;
  /** The connection string: DATABASE_URL, or the embedded server's Unix socket. */
  url: string;
  describe: string;
  /**
   * LISTEN on one or more channels over one connection of its own (dedicatedConnection.ts);
   * `onNotify` gets each notification's payload and channel. A connection that is lost (the
   * server died, or stopped answering its heartbeat) is replaced; `onResubscribed` is told then,
   * as notifications may have been missed meanwhile. Returns the function that stops listening.
   */
  listen(channels: string | readonly string[], onNotify: (payload: string, channel: string) => void, onResubscribed: () => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

const INT8 = 20;
const NUMERIC = 1700;

export interface DatabaseOptions {
  databaseUrl: string | undefined;
  dataDir: string;
  embeddedPostgresUser: string;
  /** For the LISTEN connections. */
  databaseHeartbeat?: DatabaseHeartbeat;
}

/** How LISTEN connections show in pg_stat_activity and the logs. */
export const listenConnectionName = 'tus-upload listen';

/** The Postgres server at `databaseUrl`, else the embedded one under `dataDir` (started or shared). */
export async function openDatabase(options: DatabaseOptions, log: Logger): Promise<OpenDatabase> {
  const embedded = options.databaseUrl
    ? undefined
    : await openEmbeddedPostgres({ dataDir: options.dataDir, rootRunsAs: options.embeddedPostgresUser, log: log.child({ part: 'postgres' }) });
  const connectionString = options.databaseUrl ?? embedded!.url;
  // Sizes and offsets are bigint columns; pg hands them back as strings unless told.
  const types = { getTypeParser: (oid: number, format?: 'text' | 'binary') => (oid === INT8 || oid === NUMERIC ? Number : pg.types.getTypeParser(oid, format)) };
  // An instance's budget is 10 connections: 9 pooled, and its lock session (locks/postgresLocker.ts).
  // createPool listens for 'error' on the pool and every client: a connection that dies (the
  // server stops, or ends it just as the pool closes) is replaced, never the end of the process.
  const pool = createPool({ connectionString, max: 9, types }, log, 'records');
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const listen: OpenDatabase['listen'] = async (channels, onNotify, onResubscribed) => {
    // LISTEN needs a connection of its own that stays open, outside the pool.
    const connection = await DedicatedConnection.open({
      connectionString,
      name: listenConnectionName,
      channels: typeof channels === 'string' ? [channels] : channels,
      onNotify,
      onReplaced: onResubscribed,
      heartbeat: options.databaseHeartbeat ?? defaultDatabaseHeartbeat,
      log,
    });
    return () => connection.close();
  };
  const url = new URL(connectionString);
  const describe = embedded ? `embedded postgres ${embedded.dir}` : `postgres ${url.host}${url.pathname}`;
  const close = async () => {
    await db.destroy();
    await embedded?.close();
  };
  return { db, url: connectionString, describe, listen, close };
}

/** Brings the schema up to date; safe to run from several processes at once (Kysely locks). */
export async function migrateToLatest(db: Db, log?: Logger): Promise<void> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
  const { error, results } = await migrator.migrateToLatest();
  for (const r of results ?? []) log?.info({ migration: r.migrationName, status: r.status }, 'migration');
  if (error) throw error instanceof Error ? error : new Error(String(error));
}
