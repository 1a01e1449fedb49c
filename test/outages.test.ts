// Outages lose nothing: clamd stopped for longer than every attempt would take, and a private
// Postgres server stopped under a stream of uploads. Both run as private instances of this file
// (the machine's shared services are never stopped).
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listenConnectionName } from '../server/infra/db/database.ts';
import type { RunningServer } from '../server/main/start.ts';
import { servicesDir } from './services/env.ts';
import { eventually } from './support/eventually.ts';
import { pdf, sha256 } from './support/samples.ts';
import { serviceScript } from './support/serviceScripts.ts';
import { startServerProcess, type LogLine, type ServerProcess } from './support/processes.ts';
import { createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { drillFigures, runOutageDrill } from './support/outageDrill.ts';
import { fetchStatus, tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';

const MiB = 1024 * 1024;

/** A clamd of this file's own (unix socket only), to stop and start at will. */
function privateClamd(instance: string, streamMax?: string) {
  const env = { CLAMD_INSTANCE: instance, CLAMD_TCP_PORT: '', ...(streamMax ? { CLAMD_STREAM_MAX: streamMax } : {}) };
  return {
    socket: path.join(servicesDir, instance, 'clamd.sock'),
    start: () => serviceScript('clamd', 'start', env),
    stop: () => serviceScript('clamd', 'stop', env),
  };
}

describe('clamd unreachable: inspections wait, they do not fail', () => {
  const clamd = privateClamd('outages-clamd');
  let environment: TestEnvironment;
  const servers: RunningServer[] = [];
  const start = async (overrides: Record<string, string> = {}) => {
    const server = await startTestServer(environment, overrides);
    servers.push(server);
    return server;
  };

  beforeAll(async () => {
    await clamd.stop();
    // Two attempts: without waiting, the upload would fail about one second into the outage.
    environment = await createTestEnvironment('embedded', { CLAMD_SOCKET: clamd.socket, JOB_MAX_ATTEMPTS: '2' });
  });
  afterAll(async () => {
    for (const server of servers.reverse()) await server.close();
    await environment?.destroy();
    await clamd.stop();
  });

  it('an upload-only server (RUN_JOBS=false) is ready with clamd down (it needs no clamd to receive bytes)', async () => {
    const uploadOnly = await start({ RUN_JOBS: 'false' });
    const res = await fetch(`${uploadOnly.url}/readyz`);
    const body = (await res.json()) as { checks: Record<string, string> };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.checks).not.toHaveProperty('clamd');
    await uploadOnly.close();
    servers.pop();
  });

  it('gives up after SCAN_WAIT_MAX, saying clamd was unreachable for that long', async () => {
    const server = await start({ SCAN_WAIT_MAX: '2s' });
    const { url } = await tusUpload(server.url, pdf(10_000), { filename: 'gives-up.pdf' });
    const status = await waitUntilSettled(server.url, uploadIdOf(url), 30_000);
    expect(status.status).toBe('failed');
    expect(status.reason).toMatch(/^inspect: the virus scanner \(clamd\) is unreachable; still unreachable after \d+(\.\d)?s \(SCAN_WAIT_MAX is 2s\)$/);
    // The waits used no attempt: it gave up because of the wait, not the two attempts.
    expect(status.jobs[0]).toMatchObject({ kind: 'inspect', status: 'failed', attempts: 1 });
    await server.close();
    servers.pop();
  });

  it('waits longer than every attempt would take (scan: "waiting"), then is ready once clamd answers', async () => {
    const server = await start();
    const readyz = await fetch(`${server.url}/readyz`);
    expect(readyz.status).toBe(503);
    const data = pdf(50_000);
    const { url } = await tusUpload(server.url, data, { filename: 'waits.pdf' });
    const id = uploadIdOf(url);
    const waiting = await eventually('scan: waiting', async () => {
      const status = await fetchStatus(server.url, id);
      return status.scan === 'waiting' && status;
    });
    expect(waiting.status).toBe('inspecting');
    expect(waiting.jobs[0]!.waitingSince).not.toBeNull();
    // Two attempts with a one-second backoff would be over long before this.
    await sleep(6_000);
    const still = await fetchStatus(server.url, id);
    expect(still).toMatchObject({ status: 'inspecting', scan: 'waiting' });
    // 0 between runs, 1 while a run is trying clamd: never the two that would fail it.
    expect(still.jobs[0]!.attempts).toBeLessThanOrEqual(1);
    // What the owner is told: no address of the scanner (that is in the logs).
    expect(still.jobs[0]!.error).toBe('the virus scanner (clamd) is unreachable');
    // Nothing is served while it waits.
    expect((await fetch(`${server.url}/api/uploads/${id}/files/original`)).status).toBe(409);

    await clamd.start();
    const ready = await waitUntilSettled(server.url, id, 60_000);
    expect(ready).toMatchObject({ status: 'ready', scan: 'clean', sha256: sha256(data) });
    expect(ready.jobs[0]).toMatchObject({ status: 'done', attempts: 1, waitingSince: null });
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
  }, 90_000);
});

describe('clamd refusing a stream as too large is not an outage', () => {
  const small = privateClamd('outages-clamd-small', '1M');
  let environment: TestEnvironment;
  let server: RunningServer;

  beforeAll(async () => {
    await small.start();
    environment = await createTestEnvironment('embedded', { CLAMD_SOCKET: small.socket });
    server = await startTestServer(environment);
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
    await small.stop();
  });

  it('fails at once (one attempt) with a reason naming StreamMaxLength', async () => {
    const { url } = await tusUpload(server.url, pdf(3 * MiB), { filename: 'large.pdf' });
    const status = await waitUntilSettled(server.url, uploadIdOf(url), 30_000);
    expect(status.status).toBe('failed');
    expect(status.reason).toBe("inspect: the file is larger than the virus scanner accepts (clamd's StreamMaxLength)");
    expect(status.jobs[0]).toMatchObject({ kind: 'inspect', status: 'failed', attempts: 1 });
    expect(status.scan).toBeNull();
  });
});

describe('Postgres restarted under a stream of uploads', () => {
  // A server of this file's own: the machine's cluster serves every other test run.
  const postgres = { env: { PG_INSTANCE: 'outages-postgres', PG_PORT: '15491' }, url: 'postgres://postgres@127.0.0.1:15491/test' };
  const postgresScript = (command: string) => serviceScript('private-postgres', command, postgres.env);
  let environment: TestEnvironment;
  let server: ServerProcess | undefined;

  beforeAll(async () => {
    await postgresScript('start');
    environment = await createTestEnvironment('embedded', {
      DATABASE_URL: postgres.url,
      RATE_LIMIT_UPLOADS: '0',
      // A job whose completion could not be written during the outage runs again after this.
      JOB_LEASE: '5s',
    });
    // A child process: that it stays up through the outage is the point.
    server = await startServerProcess(environment.env);
  }, 120_000);
  afterAll(async () => {
    await server?.kill('SIGTERM').catch(() => undefined);
    await environment?.destroy();
    await postgresScript('stop');
  });

  it('20 uploads and an 8 s outage: the server stays up, answers 503 meanwhile, and every upload and job completes once', async () => {
    const url = server!.url;
    const readiness: number[] = [];
    let watching = true;
    const watchReadiness = (async () => {
      while (watching) {
        readiness.push(await fetch(`${url}/readyz`).then((r) => r.status, () => 0));
        await sleep(250);
      }
    })();

    // 20 uploads of 16 chunks, a pause before each request: ~6 s each, so they span the outage.
    const files = Array.from({ length: 20 }, (_, i) => pdf(4 * MiB + i));
    const retryDelays = [250, 500, 1000, ...Array<number>(20).fill(2000)];
    const uploads = files.map((data, i) =>
      tusUpload(url, data, { filename: `outage-${i}.pdf`, chunkSize: 256 * 1024, retryDelays, pauseBeforeEachRequestMs: 300 }),
    );
    await sleep(2_000);
    await postgresScript('stop');
    const stopped = Date.now();
    await sleep(1_000);
    // Meanwhile: short 503s with Retry-After from the API and the tus endpoint, never a stack trace.
    const api = await fetch(`${url}/api/uploads/${'0'.repeat(32)}`);
    expect(api.status).toBe(503);
    expect(api.headers.get('retry-after')).toBe('2');
    expect(await api.json()).toEqual({ error: 'the database is unavailable; try again shortly' });
    const create = await fetch(`${url}/files/`, {
      method: 'POST',
      headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': '10', 'Upload-Metadata': `filename ${Buffer.from('x.pdf').toString('base64')}` },
    });
    expect(create.status).toBe(503);
    expect(create.headers.get('retry-after')).toBe('2');
    expect(await create.text()).toBe('The database is unavailable; try again shortly\n');
    // A resuming HEAD is told to wait (423, which tus clients retry), even for an id that may not
    // exist: the database cannot say.
    const head = await fetch(`${url}/files/${'0'.repeat(32)}`, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
    expect(head.status).toBe(423);
    expect(head.headers.get('retry-after')).toBe('2');
    await sleep(8_000 - (Date.now() - stopped));
    await postgresScript('start');

    const done = await Promise.all(uploads);
    const statuses = await Promise.all(done.map(({ url: uploadUrl }) => waitUntilSettled(url, uploadIdOf(uploadUrl), 60_000)));
    watching = false;
    await watchReadiness;

    expect(server!.exit(), server!.describe()).toBeUndefined();
    expect(server!.stderr()).not.toMatch(/Unhandled|uncaught/i);
    statuses.forEach((status, i) => {
      expect(status, JSON.stringify(status)).toMatchObject({ status: 'ready', size: files[i]!.length, sha256: sha256(files[i]!) });
    });
    // 503 while the database was away, 200 before and after.
    expect(readiness[0]).toBe(200);
    expect(readiness).toContain(503);
    expect(readiness.at(-1)).toBe(200);
    // Clear 503s, never a 500 or a stack trace.
    const requests = server!.logs.filter((l: LogLine) => l.msg === 'request');
    expect(requests.some((l) => l.status === 503)).toBe(true);
    expect(requests.filter((l) => Number(l.status) >= 500 && l.status !== 503)).toEqual([]);
    // Each inspect job completed exactly once.
    const jobsDone = server!.logs.filter((l) => l.msg === 'job done').map((l) => l.job);
    expect(jobsDone).toHaveLength(files.length);
    expect(new Set(jobsDone).size).toBe(files.length);
    // The LISTEN connections (the queue's, the event hub's) came back.
    expect(server!.logs.some((l) => l.msg === 'dedicated connection back' && l.connection === listenConnectionName)).toBe(true);
  }, 180_000);

  it('20 tus-js-client uploads with Postgres away 20 s in the middle: one creation per file (resuming HEADs get 423), every file whole, nothing left uploading', async () => {
    const url = server!.url;
    // The private server keeps its data from run to run: this run's files by their names.
    const prefix = `db-outage-${Date.now().toString(36)}`;
    const drill = await runOutageDrill({
      baseUrl: url,
      prefix,
      files: 20,
      fileSize: 6 * MiB,
      chunkSize: MiB / 4,
      pauseMs: 250,
      outageMs: 20_000,
      takeAway: () => postgresScript('stop'),
      bringBack: () => postgresScript('start'),
    });
    const statuses = await Promise.all(drill.urls.map((uploadUrl) => waitUntilSettled(url, uploadIdOf(uploadUrl), 120_000)));

    statuses.forEach((status, i) => expect(status, JSON.stringify(status)).toMatchObject({ status: 'ready', size: drill.data[i]!.length, sha256: sha256(drill.data[i]!) }));
    const db = new pg.Client({ connectionString: postgres.url });
    await db.connect();
    const { rows } = await db.query<{ status: string; n: number }>(`select status, count(*)::int as n from uploads where filename like $1 group by status`, [`${prefix}-%`]);
    await db.end();
    console.log(`Postgres away 20 s under 20 uploads: ${JSON.stringify({ ...drillFigures(drill), rows })}`);
    expect(drill.sentBeforeOutage).toBeLessThan(20 * 6 * MiB);
    expect(drill.creations).toEqual(drill.data.map(() => 1));
    expect(drill.answers['HEAD 423']).toBeGreaterThan(0);
    expect(rows).toEqual([{ status: 'ready', n: 20 }]);
    const failures = server!.logs.filter((l) => l.msg === 'tus request failed: database unavailable');
    expect(failures.length).toBeGreaterThan(0);
    expect(server!.logs.filter((l) => l.msg === 'tus request failed: store unavailable')).toEqual([]);
    expect(server!.exit(), server!.describe()).toBeUndefined();
  }, 240_000);

  it('a PATCH whose lock connection dies ends cleanly, and the client resumes the upload', async () => {
    const url = server!.url;
    const data = pdf(2 * MiB);
    const created = await fetch(`${url}/files/`, {
      method: 'POST',
      headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': String(data.length), 'Upload-Metadata': `filename ${Buffer.from('lock.pdf').toString('base64')}` },
    });
    expect(created.status).toBe(201);
    const uploadUrl = created.headers.get('Location')!;
    // A slow body: the PATCH holds its upload's lock (a checked-out connection) for seconds.
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent >= data.length) return controller.close();
        const chunk = data.subarray(sent, sent + 16 * 1024);
        sent += chunk.length;
        controller.enqueue(chunk);
        await sleep(100);
      },
    });
    const patch = fetch(uploadUrl, {
      method: 'PATCH',
      headers: { 'Tus-Resumable': '1.0.0', 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
      body,
      duplex: 'half',
    } as RequestInit).then(
      (res) => ({ status: res.status, offset: Number(res.headers.get('Upload-Offset')) }),
      () => ({ status: 'connection closed', offset: undefined }),
    );
    await sleep(1_500);
    await postgresScript('stop');
    // The lock is lost: its PATCH ends well before its body would, with the offset it kept
    // (or the server closes the connection): no crash, and nothing to throw away.
    const ended = await patch;
    expect(sent).toBeLessThan(data.length);
    if (ended.status !== 'connection closed') {
      expect(ended.status).toBe(204);
      expect(ended.offset).toBeGreaterThan(0);
      expect(ended.offset).toBeLessThan(data.length);
    }
    expect(server!.exit(), server!.describe()).toBeUndefined();
    await postgresScript('start');

    const resumed = await tusUpload(url, data, { uploadUrl, retryDelays: [500, 1000, ...Array<number>(10).fill(2000)] });
    const status = await waitUntilSettled(url, uploadIdOf(resumed.url), 60_000);
    expect(status).toMatchObject({ status: 'ready', size: data.length, sha256: sha256(data) });
    expect(server!.exit(), server!.describe()).toBeUndefined();
  }, 120_000);
});
