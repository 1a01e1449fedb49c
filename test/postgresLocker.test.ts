// The Postgres locker against the real test Postgres: every lock of an instance on one session,
// exclusion and release requests across instances, and what losing that session does.
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { ERRORS } from '@tus/utils';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../server/infra/settings/log.ts';
import { lockSessionName, PostgresLocker } from '../server/infra/locks/postgresLocker.ts';
import type { RunningServer } from '../server/main/start.ts';
import { testDatabaseUrl } from './services/env.ts';
import { eventually } from './support/eventually.ts';
import { pdf, sha256 } from './support/samples.ts';
import { createTestDatabase, createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';

const silent = createLogger('silent');
const never = new AbortController().signal;
const noop = () => undefined;

/** What the test database's sessions look like, seen from outside it (the admin database). */
class Observer {
  private readonly client = new pg.Client({ connectionString: testDatabaseUrl });
  private readonly databaseUrl: string;
  constructor(databaseUrl: string) {
    this.databaseUrl = databaseUrl;
  }
  private get database(): string {
    return new URL(this.databaseUrl).pathname.slice(1);
  }
  connect = () => this.client.connect();
  end = () => this.client.end();

  /** Pids of the lock sessions on the test database. */
  async lockSessions(): Promise<number[]> {
    const { rows } = await this.client.query<{ pid: number }>('select pid from pg_stat_activity where datname = $1 and application_name = $2', [this.database, lockSessionName]);
    return rows.map((r) => r.pid);
  }
  /** Connections to the test database of any kind. */
  async connections(): Promise<number> {
    const { rows } = await this.client.query<{ n: number }>('select count(*)::int as n from pg_stat_activity where datname = $1', [this.database]);
    return rows[0]!.n;
  }
  /** Advisory locks granted on the test database, by holding backend. */
  async advisoryLocksByPid(): Promise<Map<number, number>> {
    const { rows } = await this.client.query<{ pid: number; n: number }>(
      `select pid, count(*)::int as n from pg_locks
       where locktype = 'advisory' and granted and database = (select oid from pg_database where datname = $1) group by pid`,
      [this.database],
    );
    return new Map(rows.map((r) => [r.pid, r.n]));
  }
  /** The backend holding the advisory lock of upload `id` (a bigint key: classid is its high half, objid its low). */
  async holderOf(id: string): Promise<number> {
    const { rows } = await this.client.query<{ pid: number }>(
      `select pid from pg_locks where locktype = 'advisory' and granted and objsubid = 1
       and ((classid::bigint << 32) | objid::bigint) = hashtextextended($1, 0)`,
      [id],
    );
    if (rows.length !== 1) throw new Error(`${rows.length} holders of ${id}`);
    return rows[0]!.pid;
  }
  async terminate(pid: number): Promise<void> {
    await this.client.query('select pg_terminate_backend($1)', [pid]);
  }
}

describe('PostgresLocker (two instances on one database)', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let a: PostgresLocker;
  let b: PostgresLocker;
  let observer: Observer;

  beforeAll(async () => {
    database = await createTestDatabase();
    observer = new Observer(database.url);
    await observer.connect();
    [a, b] = await Promise.all([PostgresLocker.create(database.url, silent, { acquireTimeoutMs: 1_000 }), PostgresLocker.create(database.url, silent, { acquireTimeoutMs: 1_000 })]);
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close(), observer?.end()]);
    await database?.drop();
  });

  it('lets one instance hold an upload: the other times out with ERR_LOCK_TIMEOUT, then gets it once it is unlocked', async () => {
    const held = a.newLock('exclusive');
    await held.lock(never, noop);
    await expect(b.newLock('exclusive').lock(never, noop)).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT);
    await held.unlock();
    const next = b.newLock('exclusive');
    await next.lock(never, noop);
    await next.unlock();
  });

  it('keeps two requests of one instance apart although advisory locks are re-entrant in a session', async () => {
    const first = a.newLock('same-instance');
    await first.lock(never, noop);
    await expect(a.newLock('same-instance').lock(never, noop)).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT);
    await first.unlock();
  });

  it('asks the holder on the other instance to let go, and takes the lock when it does', async () => {
    const held = a.newLock('release-me');
    let asked = 0;
    await held.lock(never, () => {
      asked++;
      void held.unlock();
    });
    // Without the holder letting go the taker would wait for ever (`never`): that it gets the lock is the asking's doing.
    const taker = b.newLock('release-me');
    await taker.lock(never, noop);
    expect(asked).toBeGreaterThanOrEqual(1);
    await taker.unlock();
  });

  it('holds 200 concurrent locks on one connection', async () => {
    const before = await observer.connections();
    const locks = Array.from({ length: 200 }, (_, i) => a.newLock(`many-${i}`));
    await Promise.all(locks.map((lock) => lock.lock(never, noop)));
    const sessionOfA = await lockSessionOf(observer, a);
    const byPid = await observer.advisoryLocksByPid();
    expect(byPid.get(sessionOfA)).toBe(200);
    expect([...byPid.keys()]).toEqual([sessionOfA]);
    expect(await observer.connections()).toBe(before); // two lockers, one session each, nothing more
    expect(before).toBe(2);
    await Promise.all(locks.map((lock) => lock.unlock()));
    expect((await observer.advisoryLocksByPid()).size).toBe(0);
  });

  it('when the lock session is killed: every holder is asked to stop, the locks are free for the other instance, and the session comes back', async () => {
    const released = new Set<number>();
    const locks = Array.from({ length: 50 }, (_, i) => a.newLock(`lost-${i}`));
    await Promise.all(locks.map((lock, i) => lock.lock(never, () => void released.add(i))));
    const sessionOfA = await lockSessionOf(observer, a);
    await observer.terminate(sessionOfA);

    await eventually('every holder asked to stop', async () => released.size === 50, 60_000);
    const taken = Array.from({ length: 50 }, (_, i) => b.newLock(`lost-${i}`));
    await Promise.all(taken.map((lock) => lock.lock(never, noop)));
    // The requests that lost their locks end and unlock: nothing to undo, and no error.
    await Promise.all(locks.map((lock) => lock.unlock()));

    const newSession = await eventually('a new lock session for instance a', async () => {
      const pid = await lockSessionOf(observer, a).catch(() => undefined);
      return pid !== sessionOfA && pid;
    });
    await expect(a.newLock('lost-0').lock(never, noop)).rejects.toBe(ERRORS.ERR_LOCK_TIMEOUT); // b holds it
    await Promise.all(taken.map((lock) => lock.unlock()));
    const again = a.newLock('lost-0');
    await again.lock(never, noop);
    expect((await observer.advisoryLocksByPid()).get(newSession)).toBe(1);
    await again.unlock();
  });
});

/** The pid of `locker`'s lock session: the backend that holds a probe lock taken through it. */
async function lockSessionOf(observer: Observer, locker: PostgresLocker): Promise<number> {
  const id = `probe-${Math.random()}`;
  const probe = locker.newLock(id);
  await probe.lock(never, noop);
  try {
    return await observer.holderOf(id);
  } finally {
    await probe.unlock();
  }
}

describe('a PATCH whose lock is lost (scaleout server)', () => {
  let environment: TestEnvironment;
  let server: RunningServer;
  let observer: Observer;

  beforeAll(async () => {
    environment = await createTestEnvironment('scaleout');
    server = await startTestServer(environment);
    observer = new Observer(environment.env.DATABASE_URL!);
    await observer.connect();
  });
  afterAll(async () => {
    await server?.close();
    await observer?.end();
    await environment?.destroy();
  });

  it('ends cleanly with what it wrote, and the client resumes the upload to a whole file', async () => {
    // Minutes of trickling (8 KiB every 100 ms): the request is still sending when the lock is taken from it, however slow the machine.
    const data = pdf(16 * 1024 * 1024);
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const created = await fetch(`${server.url}/files`, {
      method: 'POST',
      headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': String(data.length), 'Upload-Metadata': `filename ${b64('doc.pdf')},filetype ${b64('application/pdf')}` },
    });
    expect(created.status).toBe(201);
    const url = new URL(created.headers.get('location')!, server.url).toString();

    // A slow client: the first 64 KiB, then 8 KiB every 100 ms, until the server answers.
    const patch = http.request(url, {
      method: 'PATCH',
      headers: { 'Tus-Resumable': '1.0.0', 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream', 'Content-Length': String(data.length) },
    });
    patch.on('error', noop); // the server may close the socket while the body still flows: expected
    const answered = new Promise<http.IncomingMessage>((resolve) => patch.once('response', resolve));
    let sent = 64 * 1024;
    patch.write(data.subarray(0, sent));
    let answer: http.IncomingMessage | undefined;
    void answered.then((res) => (answer = res));
    const trickle = (async () => {
      while (!answer && sent < data.length) {
        await sleep(100);
        if (answer) break;
        patch.write(data.subarray(sent, sent + 8 * 1024));
        sent += 8 * 1024;
      }
    })();

    const id = uploadIdOf(url);
    const holder = await eventually('the PATCH to hold its lock', () => observer.holderOf(id).catch(() => undefined), 60_000);
    await observer.terminate(holder);

    const res = await answered;
    await trickle;
    res.resume();
    expect(res.statusCode).toBe(204);
    const offset = Number(res.headers['upload-offset']);
    expect(offset).toBeGreaterThan(0);
    // Ended before its body was whole: @tus/server stops a request asked to let go (after lockDrainTimeout), whatever the machine's speed.
    expect(offset).toBeLessThan(data.length);
    patch.destroy();

    // The client resumes from where the server says it stands, like any resuming tus client.
    await eventually('the lock session to be back', async () => (await observer.lockSessions()).length === 1, 60_000);
    await tusUpload(server.url, data, { uploadUrl: url });
    const settled = await waitUntilSettled(server.url, id, 30_000);
    expect(settled.status).toBe('ready');
    expect(settled.sha256).toBe(sha256(data));
  });
});
