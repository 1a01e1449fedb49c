// The object store away: a proxy between the server and radosgw refuses new connections and cuts
// the open ones, as when the store's host goes away. Clients resume (never start over), a
// creation that fails half-way leaves nothing, and jobs wait for the store without using attempts.
import { ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testS3, testS3Client } from './services/env.ts';
import { eventually } from './support/eventually.ts';
import { startOutageProxy, type OutageProxy } from './support/outageProxy.ts';
import { killAll, startServerProcess, startWorkerProcess, type ServerProcess, type WorkerProcess } from './support/processes.ts';
import { pdf, sha256 } from './support/samples.ts';
import { createTestEnvironment, type TestEnvironment } from './support/testServer.ts';
import { request } from './support/tusRequests.ts';
import { drillFigures, runOutageDrill } from './support/outageDrill.ts';
import { fetchStatus, tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';

const MiB = 1024 * 1024;
const metadataOf = (filename: string) => `filename ${Buffer.from(filename).toString('base64')}`;

describe('the store away (a proxy between the server and S3 refusing and cutting connections)', () => {
  let proxy: OutageProxy;
  let environment: TestEnvironment;
  let server: ServerProcess;
  /** Runs the jobs (the server runs none): started during an outage by the job test, else by the first test that needs it. */
  let worker: WorkerProcess | undefined;
  let db: pg.Client;
  let s3: S3Client;

  beforeAll(async () => {
    proxy = await startOutageProxy(testS3.endpoint);
    environment = await createTestEnvironment('scaleout', {
      S3_ENDPOINT: proxy.url,
      SCAN: 'off',
      RATE_LIMIT_UPLOADS: '0',
      RUN_JOBS: 'false',
      // Were a wait for the store an attempt, the job would fail at its first one.
      JOB_MAX_ATTEMPTS: '1',
    });
    server = await startServerProcess(environment.env);
    db = new pg.Client({ connectionString: environment.env.DATABASE_URL });
    await db.connect();
    s3 = testS3Client();
  }, 120_000);
  afterAll(async () => {
    await killAll();
    s3?.destroy();
    await db?.end();
    await proxy?.close();
    await environment?.destroy();
  });

  const openMultipartUploads = async () => {
    const { Uploads = [] } = await s3.send(new ListMultipartUploadsCommand({ Bucket: environment.env.S3_BUCKET }));
    return Uploads.map((u) => u.Key);
  };
  const logged = (msg: string) => server.logs.filter((l) => l.msg === msg);

  it('answers: a creation 503 that leaves no row and no multipart upload, a resuming HEAD 423, a missing upload 404, a PATCH 503; all naming the store', async () => {
    const known = await request(`${server.url}/files/`, 'POST', { 'Upload-Length': 1000, 'Upload-Metadata': metadataOf('known.pdf') });
    expect(known.status).toBe(201);
    const knownUrl = known.headers.location!;
    await proxy.down();
    try {
      const create = await request(`${server.url}/files/`, 'POST', { 'Upload-Length': 1000, 'Upload-Metadata': metadataOf('half.pdf') });
      expect(create.status).toBe(503);
      expect(create.headers['retry-after']).toBe('2');
      expect(create.text).toBe('The store is unavailable; try again shortly\n');

      const head = await request(knownUrl, 'HEAD', {});
      expect(head.status).toBe(423);
      expect(head.headers['retry-after']).toBe('2');
      // The IETF draft's clients read Retry-After: a 503 for them.
      const draftHead = await request(knownUrl, 'HEAD', { 'Upload-Draft-Interop-Version': 6 });
      expect(draftHead.status).toBe(503);
      expect(draftHead.headers['retry-after']).toBe('2');
      // The database answers for an upload that does not exist: never a 423 then.
      expect((await request(`${server.url}/files/${'0'.repeat(32)}`, 'HEAD', {})).status).toBe(404);

      const patch = await request(knownUrl, 'PATCH', { 'Upload-Offset': 0, 'Content-Type': 'application/offset+octet-stream' }, pdf(1000));
      expect(patch.status).toBe(503);
      expect(patch.text).toBe('The store is unavailable; try again shortly\n');
    } finally {
      await proxy.up();
    }
    // The half-made upload: deleted (nothing held in quota), its store leftovers gone.
    const { rows } = await db.query<{ filename: string; status: string; reason: string | null }>(`select filename, status, reason from uploads order by created_at`);
    expect(rows).toEqual([
      { filename: 'known.pdf', status: 'uploading', reason: null },
      { filename: 'half.pdf', status: 'deleted', reason: 'creation failed: answered 503' },
    ]);
    expect(await openMultipartUploads()).toEqual([uploadIdOf(knownUrl)]);
    const failures = logged('tus request failed: store unavailable');
    expect(failures.map((l) => l.method).sort()).toEqual(['HEAD', 'HEAD', 'PATCH', 'POST']);
    expect(failures.every((l) => l.unavailable === 'store')).toBe(true);
    expect(logged('tus request failed: database unavailable')).toEqual([]);

    expect((await request(knownUrl, 'DELETE', {})).status).toBe(204);
    expect(await openMultipartUploads()).toEqual([]);
  });

  it('a job that cannot read the original waits (status JSON: waitingSince, "the store is unreachable"), uses no attempt, and finishes once the store is back', async () => {
    const data = pdf(100_000);
    const { url } = await tusUpload(server.url, data, { filename: 'waits.pdf' });
    const id = uploadIdOf(url);
    await proxy.down();
    try {
      // The upload server runs no jobs: the worker starts while the store is away.
      worker = await startWorkerProcess(environment.env);
      const waiting = await eventually('the inspection waiting for the store', async () => {
        const status = await fetchStatus(server.url, id);
        return status.jobs[0]?.waitingSince ? status : undefined;
      });
      expect(waiting.jobs[0]).toMatchObject({ kind: 'inspect', error: 'the store is unreachable' });
      expect(waiting.status).toBe('inspecting');
      // A second wait: one attempt (JOB_MAX_ATTEMPTS) would have failed the upload at the first.
      await worker!.waitForLog((l) => l.msg === 'a service the job needs is unreachable; waiting (no attempt used)' && l.upload === id, 'a wait', 30_000);
      await eventually('two waits', async () => worker!.logs.filter((l) => l.msg === 'a service the job needs is unreachable; waiting (no attempt used)').length >= 2, 30_000);
      expect((await fetchStatus(server.url, id)).status).not.toBe('failed');
    } finally {
      await proxy.up();
    }
    const ready = await waitUntilSettled(server.url, id, 60_000);
    expect(ready).toMatchObject({ status: 'ready', sha256: sha256(data) });
    expect(ready.jobs[0]).toMatchObject({ status: 'done', attempts: 1, waitingSince: null });
  }, 90_000);

  it('20 tus-js-client uploads (6 MiB, 0.5 MiB chunks) with the store away 20 s in the middle: one creation per file, every file whole, nothing left open', async () => {
    worker ??= await startWorkerProcess(environment.env);
    const drill = await runOutageDrill({
      baseUrl: server.url,
      prefix: 'store-outage',
      files: 20,
      fileSize: 6 * MiB,
      chunkSize: MiB / 2,
      pauseMs: 300,
      outageMs: 20_000,
      takeAway: () => proxy.down(),
      bringBack: () => proxy.up(),
    });
    const statuses = await Promise.all(drill.urls.map((url) => waitUntilSettled(server.url, uploadIdOf(url), 120_000)));

    statuses.forEach((status, i) => expect(status, JSON.stringify(status)).toMatchObject({ status: 'ready', size: drill.data[i]!.length, sha256: sha256(drill.data[i]!) }));
    const { rows } = await db.query<{ status: string; n: number }>(`select status, count(*)::int as n from uploads where filename like 'store-outage-%' group by status`);
    const leftOpen = await openMultipartUploads();
    console.log(`store away 20 s under 20 uploads: ${JSON.stringify({ ...drillFigures(drill), rows, leftOpen: leftOpen.length, cutConnections: proxy.cut() })}`);
    expect(drill.sentBeforeOutage).toBeLessThan(20 * 6 * MiB);
    expect(drill.creations).toEqual(drill.data.map(() => 1));
    // The outage was met: resuming HEADs were told to wait, and no upload was replaced.
    expect(drill.answers['HEAD 423']).toBeGreaterThan(0);
    expect(rows).toEqual([{ status: 'ready', n: 20 }]);
    expect(leftOpen).toEqual([]);
    expect(logged('tus request failed: store unavailable').length).toBeGreaterThan(0);
    expect(logged('tus request failed: database unavailable')).toEqual([]);
  }, 240_000);
});
