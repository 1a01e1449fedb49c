import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import { sql, type KyselyPlugin, type RootOperationNode } from 'kysely';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { migrateToLatest, openDatabase, type OpenDatabase } from '../server/infra/db/database.ts';
import { attemptsUsed, claimJob, enqueueJob, extendLease, jobsChannel, retryJob, settleJob, waitJob } from '../server/infra/db/jobQueue.ts';
import { findUpload } from '../server/infra/db/records.ts';
import type { Job, JobKind, UploadStatus } from '../server/infra/db/schema.ts';
import { UploadLifecycle } from '../hooks/uploadLifecycle.ts';
import { internalErrorReason, JobRunner, PermanentJobError, type JobHandler, type JobRunnerOptions } from '../server/jobs/jobRunner.ts';
import { createLogger } from '../server/infra/settings/log.ts';
import { markStoreFailures } from '../server/infra/store/storeUnavailable.ts';
import { testS3, testS3ClientConfig } from './services/env.ts';
import { startOutageProxy } from './support/outageProxy.ts';
import { createTestDatabase, createTestEnvironment } from './support/testServer.ts';
import { eventually } from './support/eventually.ts';

/** A poll interval no test waits out: whatever a runner does with it set, it did on a notification. */
const asleepMs = 3_600_000;

type Backend = 'postgres' | 'embedded';

const log = createLogger((process.env.TEST_LOG_LEVEL as 'info' | undefined) ?? 'silent');
const allKinds: JobKind[] = ['inspect', 'image', 'video'];
const lifecycle = new UploadLifecycle();


describe.each<Backend>(['postgres', 'embedded'])('job queue on %s', (backend) => {
  let database: OpenDatabase;
  let dispose: () => Promise<void>;
  const runners: JobRunner[] = [];

  beforeAll(async () => {
    if (backend === 'postgres') {
      const testDb = await createTestDatabase();
      database = await openDatabase({ databaseUrl: testDb.url, dataDir: os.tmpdir(), embeddedPostgresUser: 'nobody' }, log);
      dispose = testDb.drop;
    } else {
      const environment = await createTestEnvironment('embedded');
      database = await openDatabase(environment.config(), log);
      dispose = environment.destroy;
    }
    expect(database.describe).toMatch(backend === 'embedded' ? /^embedded postgres / : /^postgres /);
    await migrateToLatest(database.db);
  });
  afterAll(async () => {
    await database?.close();
    await dispose?.();
  });
  beforeEach(async () => {
    // claimJob takes any runnable job: every test starts from an empty queue.
    await database.db.deleteFrom('jobs').execute();
    await database.db.deleteFrom('uploads').execute();
  });
  afterEach(async () => {
    await Promise.all(runners.splice(0).map((r) => r.stop()));
  });

  async function newUpload(status: UploadStatus = 'received'): Promise<string> {
    const id = randomUUID().replaceAll('-', '');
    // A fixture: the upload is put in the state the test needs, not walked there.
    await database.db.insertInto('uploads').values({ id, safe_filename: 'file.pdf', storage_key: id, status, tus_metadata: '{}', size: 10 }).execute();
    return id;
  }

  async function jobOf(uploadId: string, kind: JobKind = 'inspect'): Promise<Job> {
    return database.db.selectFrom('jobs').selectAll().where('upload_id', '=', uploadId).where('kind', '=', kind).executeTakeFirstOrThrow();
  }

  async function queueJobs(count: number, maxAttempts = 5): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const id = await newUpload();
      await enqueueJob(database.db, id, 'inspect', maxAttempts);
      ids.push(id);
    }
    return ids;
  }

  function startRunner(handlers: JobRunnerOptions['handlers'], options: Partial<JobRunnerOptions> = {}): Promise<JobRunner> {
    const runner = new JobRunner({ database, lifecycle, handlers, log, lanes: [{ kinds: allKinds, concurrency: 2 }], leaseMs: 5_000, pollMs: 100, storeWaitMaxMs: 60_000, ...options });
    runners.push(runner);
    return runner.start().then(() => runner);
  }

  const done = (result: Record<string, unknown> = {}, uploadId?: string) => ({
    result,
    commit: async (trx: typeof database.db) => {
      if (!uploadId) return;
      await lifecycle.move(trx, uploadId, 'inspecting', { from: ['received'] });
      await lifecycle.move(trx, uploadId, 'ready', { from: ['inspecting'] });
    },
  });

  describe('queue', () => {
    it('keeps one job per (upload, kind) when it is queued twice', async () => {
      const id = await newUpload();
      await enqueueJob(database.db, id, 'inspect', 5);
      await enqueueJob(database.db, id, 'inspect', 7);
      await enqueueJob(database.db, id, 'image', 5);
      const jobs = await database.db.selectFrom('jobs').selectAll().where('upload_id', '=', id).orderBy('kind').execute();
      expect(jobs.map((j) => [j.kind, j.status, j.max_attempts, j.attempts])).toEqual([
        ['image', 'queued', 5, 0],
        ['inspect', 'queued', 5, 0],
      ]);
    });

    it('never hands the same job to two claimers at once', async () => {
      const uploads = await queueJobs(30);
      const claimers = Array.from({ length: 8 }, (_, i) => `worker-${i}`);
      const claimed: { worker: string; job: Job }[] = [];
      for (let round = 0; round < 10; round++) {
        // Concurrent claims: on Postgres each runs on its own pooled connection.
        const results = await Promise.all(claimers.map(async (worker) => ({ worker, job: await claimJob(database.db, worker, 60_000, allKinds) })));
        const got = results.filter((r): r is { worker: string; job: Job } => r.job !== undefined);
        claimed.push(...got);
        if (got.length === 0) break;
      }
      const jobIds = claimed.map((c) => c.job.id);
      expect(new Set(jobIds).size).toBe(jobIds.length);
      expect(claimed.map((c) => c.job.upload_id).sort()).toEqual([...uploads].sort());
      const rows = await database.db.selectFrom('jobs').selectAll().execute();
      for (const { worker, job } of claimed) {
        const row = rows.find((r) => r.id === job.id)!;
        expect(row).toMatchObject({ status: 'running', attempts: 1, lease_holder: worker });
      }
      expect(await claimJob(database.db, 'late', 60_000, allKinds)).toBeUndefined();
    });

    it('claims only jobs of the kinds asked for', async () => {
      const id = await newUpload();
      await enqueueJob(database.db, id, 'inspect', 5);
      await enqueueJob(database.db, id, 'image', 5);
      expect(await claimJob(database.db, 'worker-a', 60_000, ['video'])).toBeUndefined();
      expect(await claimJob(database.db, 'worker-a', 60_000, ['image', 'video'])).toMatchObject({ kind: 'image', upload_id: id });
      expect(await claimJob(database.db, 'worker-a', 60_000, ['image', 'video'])).toBeUndefined();
      expect(await claimJob(database.db, 'worker-a', 60_000, ['inspect'])).toMatchObject({ kind: 'inspect', upload_id: id });
    });

    it('hands a job whose lease ran out to another worker, and the first can no longer settle it', async () => {
      const [id] = await queueJobs(1);
      const first = (await claimJob(database.db, 'worker-a', 60_000, allKinds))!;
      expect(first).toMatchObject({ upload_id: id, status: 'running', attempts: 1, lease_holder: 'worker-a' });
      expect(await claimJob(database.db, 'worker-b', 60_000, allKinds)).toBeUndefined();

      // The lease runs out (moved, rather than waited for).
      await sql`update jobs set lease_expires_at = now() where id = ${first.id}`.execute(database.db);
      const second = (await claimJob(database.db, 'worker-b', 60_000, allKinds))!;
      expect(second).toMatchObject({ id: first.id, status: 'running', attempts: 2, lease_holder: 'worker-b' });

      expect(await extendLease(database.db, first, 'worker-a', 60_000)).toBe(false);
      expect(await settleJob(database.db, first, 'worker-a', { status: 'done', result: { by: 'a' } })).toBe(false);
      expect(await settleJob(database.db, first, 'worker-a', { status: 'failed', error: 'a gave up' })).toBe(false);
      expect(await retryJob(database.db, first, 'worker-a', 'a failed', 0)).toBe(false);
      expect(await jobOf(id!)).toMatchObject({ status: 'running', attempts: 2, lease_holder: 'worker-b', result: null, last_error: null });

      expect(await settleJob(database.db, second, 'worker-b', { status: 'done', result: { by: 'b' } })).toBe(true);
      expect(await jobOf(id!)).toMatchObject({ status: 'done', attempts: 2, lease_holder: null, lease_expires_at: null, result: { by: 'b' }, progress: 100 });
      expect(await settleJob(database.db, second, 'worker-b', { status: 'failed', error: 'again' })).toBe(false);
    });

    it('does not let an earlier attempt settle a job the same worker claimed again', async () => {
      // A runner whose heartbeats failed (database unreachable for a while) can claim its own
      // job again; the attempt number tells the two runs apart.
      const [id] = await queueJobs(1);
      const first = (await claimJob(database.db, 'worker-a', 200, allKinds))!;
      await sleep(400);
      const second = (await claimJob(database.db, 'worker-a', 60_000, allKinds))!;
      expect(second).toMatchObject({ id: first.id, attempts: 2, lease_holder: 'worker-a' });

      expect(await extendLease(database.db, first, 'worker-a', 60_000)).toBe(false);
      expect(await retryJob(database.db, first, 'worker-a', 'first run failed', 0)).toBe(false);
      expect(await settleJob(database.db, first, 'worker-a', { status: 'done', result: { run: 1 } })).toBe(false);
      expect(await jobOf(id!)).toMatchObject({ status: 'running', attempts: 2, result: null });
      expect(await settleJob(database.db, second, 'worker-a', { status: 'done', result: { run: 2 } })).toBe(true);
      expect(await jobOf(id!)).toMatchObject({ status: 'done', result: { run: 2 } });
    });

    it('puts a retried job back with run_after in the future, not claimable before then', async () => {
      const [id] = await queueJobs(1);
      const job = (await claimJob(database.db, 'worker-a', 60_000, allKinds))!;
      // The delay, on the database's clock: run_after is the delay past the retry, which came between `before` and `after`.
      const clock = async () => (await sql<{ now: Date }>`select clock_timestamp() as now`.execute(database.db)).rows[0]!.now.getTime();
      const delayMs = 60_000;
      const before = await clock();
      expect(await retryJob(database.db, job, 'worker-a', 'clamd unreachable', delayMs)).toBe(true);
      const after = await clock();
      const queued = await jobOf(id!);
      expect(queued).toMatchObject({ status: 'queued', attempts: 1, lease_holder: null, lease_expires_at: null, last_error: 'clamd unreachable' });
      const { rows } = await sql<{ run_after: Date }>`select run_after from jobs where id = ${job.id}`.execute(database.db);
      expect(rows[0]!.run_after.getTime()).toBeGreaterThanOrEqual(before + delayMs);
      expect(rows[0]!.run_after.getTime()).toBeLessThanOrEqual(after + delayMs);

      expect(await claimJob(database.db, 'worker-b', 60_000, allKinds)).toBeUndefined();
      // Its time comes (moved, rather than waited for): now it is claimable.
      await sql`update jobs set run_after = now() where id = ${job.id}`.execute(database.db);
      const again = await claimJob(database.db, 'worker-b', 60_000, allKinds);
      expect(again).toMatchObject({ id: job.id, attempts: 2, lease_holder: 'worker-b' });
    });
  });

  describe('waiting for an unreachable service', () => {
    it('re-queues without using an attempt, keeps when the wait began, and a run that lost its lease cannot wait or settle', async () => {
      const [id] = await queueJobs(1, 1);
      const first = (await claimJob(database.db, 'worker-a', 60_000, allKinds))!;
      expect(await waitJob(database.db, first, 'worker-a', 'cannot reach clamd', 0)).toBe(true);
      const waiting = await jobOf(id!);
      expect(waiting).toMatchObject({ status: 'queued', attempts: 1, waits: 1, lease_holder: null, last_error: 'cannot reach clamd' });
      expect(attemptsUsed(waiting)).toBe(0);
      expect(waiting.waiting_since).toBeInstanceOf(Date);

      // Claimed again: a new run identity (attempts 2), the wait's start kept across runs.
      const second = (await claimJob(database.db, 'worker-a', 60_000, allKinds))!;
      expect(second).toMatchObject({ attempts: 2, waits: 1 });
      expect(await waitJob(database.db, second, 'worker-a', 'still down', 0)).toBe(true);
      const third = (await claimJob(database.db, 'worker-a', 60_000, allKinds))!;
      expect(third.waiting_since).toEqual(waiting.waiting_since);
      expect(attemptsUsed(third)).toBe(1);
      // The earlier runs of the same worker can change nothing.
      expect(await waitJob(database.db, second, 'worker-a', 'stale', 0)).toBe(false);
      expect(await settleJob(database.db, first, 'worker-a', { status: 'done', result: {} })).toBe(false);

      // A counted retry means the service answered: the wait is over.
      expect(await retryJob(database.db, third, 'worker-a', 'a real failure', 0)).toBe(true);
      expect(await jobOf(id!)).toMatchObject({ status: 'queued', waits: 2, waiting_since: null });
    });
  });

  describe('JobRunner', () => {
    it('retries a failing handler with growing delays until it succeeds', async () => {
      const calls: number[] = [];
      const inspect: JobHandler = async (job) => {
        calls.push(Date.now());
        if (calls.length <= 2) throw new Error(`flaky ${calls.length}`);
        return done({ ok: true }, job.upload_id);
      };
      const [id] = await queueJobs(1, 5);
      const ends: string[] = [];
      await startRunner({ inspect }, { onJobEnd: (kind, end) => ends.push(`${kind} ${end}`) });
      const job = await eventually('the job to be done', async () => {
        const j = await jobOf(id!);
        return j.status === 'done' && j;
      });
      expect(job).toMatchObject({ attempts: 3, result: { ok: true }, lease_holder: null });
      // Told after the commit the probe above may see first.
      await eventually('the runner to tell the end', async () => ends.length === 3);
      expect(ends).toEqual(['inspect retry', 'inspect retry', 'inspect done']);
      expect(calls).toHaveLength(3);
      // backoffMs: 1 s then 2 s, each ±25 %.
      expect(calls[1]! - calls[0]!).toBeGreaterThanOrEqual(700);
      expect(calls[2]! - calls[1]!).toBeGreaterThanOrEqual(1_450);
      expect(calls[2]! - calls[1]!).toBeGreaterThan((calls[1]! - calls[0]!) * 0.9);
      expect((await findUpload(database.db, id!))?.status).toBe('ready');
    });

    it('waits, whatever the kind of job, while the store is unreachable (no attempt used), and gives up after STORE_WAIT_MAX', async () => {
      // A real S3 client (marked as the store's clients are) behind a proxy that refuses connections.
      const proxy = await startOutageProxy(testS3.endpoint);
      const s3 = new S3Client({ ...testS3ClientConfig(), endpoint: proxy.url, maxAttempts: 1 });
      markStoreFailures(s3);
      try {
        await proxy.down();
        let runs = 0;
        // A media job writing its outputs: the store answers from its third run on.
        const image: JobHandler = async () => {
          if (++runs === 3) await proxy.up();
          await s3.send(new ListBucketsCommand({}));
          return done({ stored: true });
        };
        const id = await newUpload('processing');
        await enqueueJob(database.db, id, 'image', 1);
        const imageRunner = await startRunner({ image });
        const job = await eventually('the job to be done', async () => {
          const j = await jobOf(id, 'image');
          return j.status === 'done' && j;
        });
        // One attempt allowed, three runs: the two that met the outage used none.
        expect(job).toMatchObject({ attempts: 3, waits: 2, waiting_since: null, result: { stored: true } });
        expect(attemptsUsed(job)).toBe(1);
        // It has no inspect handler.
        await imageRunner.stop();

        await proxy.down();
        const [given] = await queueJobs(1, 5);
        await startRunner({ inspect: async () => (await s3.send(new ListBucketsCommand({})), done()) }, { storeWaitMaxMs: 1_500 });
        const failed = await eventually('the job to give up', async () => {
          const j = await jobOf(given!);
          return j.status === 'failed' && j;
        });
        expect(failed.last_error).toMatch(/^the store is unreachable; still unreachable after \d+(\.\d)?s \(STORE_WAIT_MAX is 1\.5s\)$/);
        expect(attemptsUsed(failed)).toBeLessThanOrEqual(1);
      } finally {
        s3.destroy();
        await proxy.close();
      }
    });

    it('fails the job and its upload at once on a PermanentJobError', async () => {
      let calls = 0;
      const inspect: JobHandler = async () => {
        calls++;
        throw new PermanentJobError('the bytes are not a PDF');
      };
      const [id] = await queueJobs(1, 5);
      await startRunner({ inspect });
      const job = await eventually('the job to fail', async () => {
        const j = await jobOf(id!);
        return j.status === 'failed' && j;
      });
      expect(job).toMatchObject({ attempts: 1, last_error: 'the bytes are not a PDF', lease_holder: null, result: null });
      expect(calls).toBe(1);
      expect(await findUpload(database.db, id!)).toMatchObject({ status: 'failed', reason: 'inspect: the bytes are not a PDF' });
    });

    it('fails the job for good after max_attempts failures', async () => {
      let calls = 0;
      const inspect: JobHandler = async () => {
        calls++;
        throw new Error(`still broken (${calls})`);
      };
      const [id] = await queueJobs(1, 2);
      const ends: string[] = [];
      await startRunner({ inspect }, { onJobEnd: (kind, end, seconds) => ends.push(`${kind} ${end} ${seconds >= 0}`) });
      const job = await eventually('the job to fail', async () => {
        const j = await jobOf(id!);
        return j.status === 'failed' && j;
      });
      // The error's own message may hold internals: the logs have it, the job and the upload a short reason.
      expect(job).toMatchObject({ attempts: 2, last_error: internalErrorReason });
      await sleep(1_500);
      expect(calls).toBe(2);
      expect(ends).toEqual(['inspect retry true', 'inspect failed true']);
      expect(await findUpload(database.db, id!)).toMatchObject({ status: 'failed', reason: `inspect: ${internalErrorReason}` });
    });

    it('fails a job whose workers kept dying once its attempts run out, without running it again', async () => {
      let calls = 0;
      const inspect: JobHandler = async (job) => {
        calls++;
        return done({}, job.upload_id);
      };
      const [id] = await queueJobs(1, 1);
      // A worker claims the only attempt and dies: its lease runs out.
      await claimJob(database.db, 'dead-worker', 200, allKinds);
      await startRunner({ inspect });
      const job = await eventually('the job to fail', async () => {
        const j = await jobOf(id!);
        return j.status === 'failed' && j;
      });
      expect(job.attempts).toBe(2);
      expect(job.last_error).toMatch(/worker lost/);
      expect(calls).toBe(0);
      expect((await findUpload(database.db, id!))?.status).toBe('failed');
    });

    it('keeps the lease of a job running longer than the lease, so no other runner takes it', async () => {
      const leaseMs = 900;
      const calls: string[] = [];
      const slow = (name: string): JobHandler => async (job) => {
        calls.push(name);
        await sleep(leaseMs * 4);
        return done({ by: name }, job.upload_id);
      };
      const [id] = await queueJobs(1, 5);
      const first = await startRunner({ inspect: slow('first') }, { leaseMs, pollMs: 50 });
      await eventually('the first runner to start the job', async () => calls.length > 0);
      await startRunner({ inspect: slow('second') }, { leaseMs, pollMs: 50 });
      const leases: number[] = [];
      const job = await eventually(
        'the job to be done',
        async () => {
          const j = await jobOf(id!);
          if (j.status === 'running') {
            expect(j.lease_holder).toBe(first.workerId);
            leases.push(new Date(j.lease_expires_at!).getTime());
          }
          return j.status === 'done' && j;
        },
        20_000,
        100,
      );
      expect(calls).toEqual(['first']);
      expect(job).toMatchObject({ attempts: 1, result: { by: 'first' } });
      // The lease moved forward while the job ran, well past its first expiry.
      expect(Math.max(...leases) - Math.min(...leases)).toBeGreaterThan(leaseMs * 2);
    });

    it('stop() waits for the running jobs and claims no more', async () => {
      let started = 0;
      let finished = 0;
      const inspect: JobHandler = async (job) => {
        started++;
        await sleep(1_500);
        finished++;
        return done({}, job.upload_id);
      };
      const [id] = await queueJobs(1, 5);
      const runner = await startRunner({ inspect });
      await eventually('the job to start', async () => started === 1);
      await runner.stop();
      expect(finished).toBe(1);
      expect((await jobOf(id!)).status).toBe('done');

      const [later] = await queueJobs(1, 5);
      await sleep(500);
      expect(started).toBe(1);
      expect((await jobOf(later!)).status).toBe('queued');
    });

    it('stop() right after start() returns at once, not after a poll interval', async () => {
      // A poll interval far past the test's timeout: a stop() that waited for it would fail the test.
      const runner = await startRunner({}, { pollMs: asleepMs });
      await runner.stop();
    });

    it('wakes up on a notification instead of waiting for the next poll', async () => {
      const picked: number[] = [];
      const inspect: JobHandler = async (job) => {
        picked.push(Date.now());
        return done({}, job.upload_id);
      };
      // Polling only every hour: a job done at all was picked up on its notification.
      await startRunner({ inspect }, { pollMs: asleepMs });
      // Let the first claim find nothing, so the runner is asleep.
      await sleep(500);
      for (let round = 0; round < 3; round++) {
        const [id] = await queueJobs(1, 5);
        await eventually('the job to be done', async () => (await jobOf(id!)).status === 'done', 60_000);
        expect(picked).toHaveLength(round + 1);
        await sleep(200);
      }
    });

    it('runs each lane in its own slots: a full inspect lane does not hold back an image job', async () => {
      let releaseInspect = () => {};
      const inspectHeld = new Promise<void>((resolve) => (releaseInspect = resolve));
      let inspectStarted = false;
      const handlers: JobRunnerOptions['handlers'] = {
        inspect: async (job) => {
          inspectStarted = true;
          await inspectHeld;
          return done({}, job.upload_id);
        },
        image: async () => done({ image: true }),
      };
      const lanes = [{ kinds: ['inspect' as const], concurrency: 1 }, { kinds: ['image' as const, 'video' as const], concurrency: 1 }];
      await startRunner(handlers, { lanes, pollMs: asleepMs });
      await sleep(300);
      const [held, waiting] = await queueJobs(2, 5);
      await eventually('the first inspect job to start', async () => inspectStarted);
      await enqueueJob(database.db, held!, 'image', 5);
      // The image lane was asleep (hourly poll): the notification naming `image` woke it.
      await eventually('the image job to be done', async () => (await jobOf(held!, 'image')).status === 'done', 60_000);
      expect((await jobOf(waiting!)).status).toBe('queued');
      releaseInspect();
      await eventually('both inspect jobs to be done', async () => (await jobOf(waiting!)).status === 'done', 60_000);
    });

    it('does not lose a notification that arrives while a claim is under way', async () => {
      // The job becomes due while the runner's first claim is on its way back (that claim saw
      // nothing due) and the notification for it arrives before the claim's answer. The runner
      // must claim again instead of sleeping through the poll interval.
      const [id] = await queueJobs(1, 5);
      // Due in an hour, until the first claim has seen nothing due: then it becomes due, and its notification arrives before that claim's answer.
      await sql`update jobs set run_after = now() + interval '1 hour'`.execute(database.db);
      let onNotify: ((payload: string, channel: string) => void) | undefined;
      let held = false;
      const claims = new WeakSet<object>();
      const holdFirstEmptyClaim: KyselyPlugin = {
        transformQuery({ node, queryId }): RootOperationNode {
          if (node.kind === 'RawNode' && node.sqlFragments.join('').includes("set status = 'running'")) claims.add(queryId);
          return node;
        },
        async transformResult({ queryId, result }) {
          if (!held && claims.has(queryId) && result.rows.length === 0) {
            held = true;
            await sql`update jobs set run_after = now()`.execute(database.db);
            onNotify?.('inspect', jobsChannel);
          }
          return result;
        },
      };
      const watched: OpenDatabase = {
        ...database,
        db: database.db.withPlugin(holdFirstEmptyClaim),
        listen: (channel, callback, onResubscribed) => {
          onNotify = callback;
          return database.listen(channel, callback, onResubscribed);
        },
      };
      // Polling only every hour: done at all means the runner claimed again on the notification.
      await startRunner({ inspect: async (job) => done({}, job.upload_id) }, { database: watched, pollMs: asleepMs });
      await eventually('the job to be done', async () => (await jobOf(id!)).status === 'done', 60_000);
      expect(held).toBe(true);
    });
  });
});
