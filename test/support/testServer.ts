import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import pg from 'pg';
import { loadConfig, type Config } from '../../server/infra/settings/config.ts';
import { createLogger } from '../../server/infra/settings/log.ts';
import { stopEmbeddedPostgres } from '../../server/infra/db/embeddedPostgres.ts';
import { startServer, type RunningServer } from '../../server/main/start.ts';
import { clamdSocket, createTestBucket, testDatabaseUrl, testS3 } from '../services/env.ts';
import { reachableTempDir } from './reachableTempDir.ts';

/** The two ways the server runs, as the tests name them. */
export type Setup = 'embedded' | 'scaleout';
export const setups: Setup[] = ['embedded', 'scaleout'];

/** A fresh, empty database on the test Postgres server; dropped by the returned function. */
export async function createTestDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `upl_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: testDatabaseUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(testDatabaseUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const client = new pg.Client({ connectionString: testDatabaseUrl });
      await client.connect();
      await client.query(`drop database if exists ${name} with (force)`);
      await client.end();
    },
  };
}

/** The S3_* settings of a fresh bucket on the test radosgw. */
export async function testBucketSettings(): Promise<Record<string, string>> {
  return {
    S3_BUCKET: await createTestBucket(),
    S3_ENDPOINT: testS3.endpoint,
    S3_REGION: testS3.region,
    S3_ACCESS_KEY_ID: testS3.accessKeyId,
    S3_SECRET_ACCESS_KEY: testS3.secretAccessKey,
    S3_FORCE_PATH_STYLE: 'true',
  };
}

export interface TestEnvironment {
  setup: Setup;
  /** Settings shared by every server and worker of this environment (same DB, store, clamd). */
  env: Record<string, string>;
  dataDir: string;
  config(overrides?: Record<string, string>): Config;
  destroy(): Promise<void>;
}

/**
 * Real services for one test file: a temp DATA_DIR; for `scaleout` also a fresh Postgres
 * database and a fresh bucket on radosgw. clamd is used in both.
 */
export async function createTestEnvironment(setup: Setup, overrides: Record<string, string> = {}): Promise<TestEnvironment> {
  const dataDir = await reachableTempDir('upload-test-');
  const env: Record<string, string> = {
    DATA_DIR: dataDir,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    CLAMD_SOCKET: clamdSocket,
    JOB_POLL_INTERVAL: '200ms',
    // The HLS ladder costs as much as the mp4 again: only the tests about it turn it on.
    HLS: 'off',
    ...overrides,
  };
  let dropDatabase: (() => Promise<void>) | undefined;
  if (setup === 'scaleout') {
    const database = await createTestDatabase();
    dropDatabase = database.drop;
    Object.assign(env, { DATABASE_URL: database.url, ...(await testBucketSettings()), ...overrides });
  }
  return {
    setup,
    env,
    dataDir,
    config: (more = {}) => loadConfig({ ...env, ...more }),
    destroy: async () => {
      await dropDatabase?.();
      // A server process the test SIGKILLed leaves its embedded Postgres running.
      await stopEmbeddedPostgres(dataDir);
      await fs.rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Starts a server in this process on a free port. */
export async function startTestServer(environment: TestEnvironment, overrides: Record<string, string> = {}): Promise<RunningServer> {
  const config = environment.config(overrides);
  return startServer(config, createLogger(config.logLevel));
}
