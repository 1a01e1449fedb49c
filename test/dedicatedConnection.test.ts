// The connections kept open outside the pool (every LISTEN, the lock session) when the path to
// Postgres goes silent without closing: a proxy in this process stops forwarding, so both kernels
// keep the connection up and TCP keepalive is answered. Only the heartbeat can notice.
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UploadLifecycle } from '../hooks/uploadLifecycle.ts';
import { openUploadEventHub, type UploadEventHub } from '../server/http/uploadEventHub.ts';
import { listenConnectionName, migrateToLatest, openDatabase, type OpenDatabase } from '../server/infra/db/database.ts';
import { enqueueJob } from '../server/infra/db/jobQueue.ts';
import { uploadProgressChannel, type UploadProgress } from '../server/infra/db/uploadEventLog.ts';
import { lockSessionName, PostgresLocker } from '../server/infra/locks/postgresLocker.ts';
import { loadConfig } from '../server/infra/settings/config.ts';
import { createLogger } from '../server/infra/settings/log.ts';
import { JobRunner } from '../server/jobs/jobRunner.ts';
import { eventually } from './support/eventually.ts';
import { startStallingProxy, type StallingProxy } from './support/stallingProxy.ts';
import { createTestDatabase } from './support/testServer.ts';

const log = createLogger((process.env.TEST_LOG_LEVEL as 'info' | undefined) ?? 'silent');
const never = new AbortController().signal;
const noop = () => undefined;

describe('DATABASE_HEARTBEAT and DATABASE_HEARTBEAT_TIMEOUT', () => {
  it('take durations with a unit, at least 100ms, and name themselves when wrong', () => {
    expect(loadConfig({}).databaseHeartbeat).toEqual({ intervalMs: 5_000, timeoutMs: 10_000 });
    expect(loadConfig({ DATABASE_HEARTBEAT: '2s', DATABASE_HEARTBEAT_TIMEOUT: '3s' }).databaseHeartbeat).toEqual({ intervalMs: 2_000, timeoutMs: 3_000 });
    // Every bad value at once.
    expect(() => loadConfig({ DATABASE_HEARTBEAT: '50ms', DATABASE_HEARTBEAT_TIMEOUT: '5' })).toThrow(
      expect.objectContaining({ problems: ['DATABASE_HEARTBEAT_TIMEOUT: "5" has no unit; write 5ms or 5s (units: ms, s, m, h, d)', 'DATABASE_HEARTBEAT: must be at least 100ms'] }),
    );
    expect(() => loadConfig({ DATABASE_HEARTBEAT_TIMEOUT: '10ms' })).toThrow(/DATABASE_HEARTBEAT_TIMEOUT: must be at least 100ms/);
  });
});

describe('a dedicated connection whose path stops forwarding without closing', () => {
  // Short, so the test does not wait on the defaults; nothing below depends on how fast it notices.
  const heartbeat = loadConfig({ DATABASE_HEARTBEAT: '200ms', DATABASE_HEARTBEAT_TIMEOUT: '1s' }).databaseHeartbeat;
  let testDb: Awaited<ReturnType<typeof createTestDatabase>>;
  let proxy: StallingProxy;
  let database: OpenDatabase;
  /** Straight to Postgres, past the proxy: sends the notifications and looks at the sessions. */
  let direct: pg.Client;

  beforeAll(async () => {
    testDb = await createTestDatabase();
    proxy = await startStallingProxy(testDb.url);
    database = await openDatabase({ databaseUrl: proxy.url, dataDir: os.tmpdir(), embeddedPostgresUser: 'nobody', databaseHeartbeat: heartbeat }, log);
    await migrateToLatest(database.db);
    direct = new pg.Client({ connectionString: testDb.url });
    await direct.connect();
  });
  afterAll(async () => {
    await database?.close();
    await direct?.end();
    await proxy?.close();
    await testDb?.drop();
  });

  const notify = (channel: string, payload: string) => direct.query('select pg_notify($1, $2)', [channel, payload]);
  const backends = async (name: string) =>
    (await direct.query<{ pid: number }>('select pid from pg_stat_activity where datname = current_database() and application_name = $1', [name])).rows.map((r) => r.pid);
  /** Stalls the proxied connections named `name`; resolves once each has been replaced by a new one and its backend is gone. */
  async function stallAndAwaitReplacement(name: string): Promise<void> {
    const before = await backends(name);
    const stalled = proxy.stall((startup) => startup.includes(name));
    expect(stalled).toBeGreaterThan(0);
    await eventually(`new backends for ${name}, the stalled ones ended`, async () => {
      const now = await backends(name);
      return now.length === before.length && before.filter((pid) => !now.includes(pid)).length === stalled;
    });
  }

  it('LISTEN: the heartbeat notices, a new connection replaces it, the owner is told, and a NOTIFY sent after reaches the listener', async () => {
    const received: string[] = [];
    let resubscribed = 0;
    const unlisten = await database.listen('stall_test', (payload) => received.push(payload), () => resubscribed++);
    try {
      await notify('stall_test', 'before');
      await eventually('the notification before the stall', async () => received.includes('before'));

      await stallAndAwaitReplacement(listenConnectionName);
      // The proxy never closed the old connection: the heartbeat is what gave up on it.
      expect(proxy.stalledOpen()).toBe(1);
      await eventually('the listener told it may have missed notifications', async () => resubscribed > 0);
      await notify('stall_test', 'after');
      await eventually('the notification after the stall', async () => received.includes('after'));
    } finally {
      await unlisten();
    }
  });

  it('job wake-ups: a runner that polls every ten minutes still runs a job queued after the stall', async () => {
    const ran: string[] = [];
    const lifecycle = new UploadLifecycle();
    const runner = new JobRunner({
      database,
      lifecycle,
      handlers: {
        inspect: async (job) => {
          ran.push(job.upload_id);
          return { result: {}, commit: async () => undefined };
        },
      },
      log,
      lanes: [{ kinds: ['inspect'], concurrency: 1 }],
      leaseMs: 60_000,
      pollMs: 600_000,
      storeWaitMaxMs: 60_000,
    });
    await runner.start();
    try {
      await stallAndAwaitReplacement(listenConnectionName);
      const id = randomUUID().replaceAll('-', '');
      await lifecycle.create(database.db, { id, safe_filename: 'a.pdf', storage_key: id, tus_metadata: '{}', size: 1, expires_at: new Date(Date.now() + 3_600_000) });
      await enqueueJob(database.db, id, 'inspect', 5);
      await eventually('the job queued after the stall to run', async () => ran.includes(id));
    } finally {
      await runner.stop();
    }
  });

  it('event streams: each watcher is told to read its log again, and progress notified after the stall reaches it', async () => {
    const hub: UploadEventHub = await openUploadEventHub(database, log);
    let changed = 0;
    const progress: UploadProgress[] = [];
    const unwatch = hub.watch('stalled-upload', { changed: () => changed++, progress: (p) => progress.push(p), close: noop });
    try {
      await stallAndAwaitReplacement(listenConnectionName);
      await eventually('the watcher told to read its log again', async () => changed > 0);
      await notify(uploadProgressChannel, JSON.stringify({ id: 'stalled-upload', offset: 5, size: 10 }));
      await eventually('the progress notified after the stall', async () => progress.some((p) => 'offset' in p && p.offset === 5));
    } finally {
      unwatch();
      await hub.close();
    }
  });

  it('lock session: holders are told their locks are gone, the locks are free for another instance, and locking works again on the new session', async () => {
    const a = await PostgresLocker.create(proxy.url, log, { heartbeat });
    const b = await PostgresLocker.create(testDb.url, log, { acquireTimeoutMs: 30_000 });
    try {
      const held = a.newLock('stalled');
      let asked = 0;
      await held.lock(never, () => {
        asked++;
        void held.unlock();
      });
      await stallAndAwaitReplacement(lockSessionName);
      await eventually('the holder asked to stop', async () => asked > 0);
      // The stalled backend was ended by the new session, so its lock is free at once, not after the server's keepalive.
      const taken = b.newLock('stalled');
      await taken.lock(never, noop);
      await taken.unlock();

      const again = a.newLock('again');
      let releaseAsked = false;
      await again.lock(never, () => {
        releaseAsked = true;
        void again.unlock();
      });
      // b asks a to let go over NOTIFY: a hears it on its new session.
      const taker = b.newLock('again');
      await taker.lock(never, noop);
      expect(releaseAsked).toBe(true);
      await taker.unlock();
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
