import fs from 'node:fs/promises';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListMultipartUploadsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { expectedOutputs } from '../server/jobs/processMedia.ts';
import { testS3Client } from './services/env.ts';
import { eventually } from './support/eventually.ts';
import { freePort } from './support/freePort.ts';
import { cameraJpeg, makeSampleDir } from './support/imageSamples.ts';
import { killAll, startServerProcess, startWorkerProcess, type ServerProcess, type WorkerProcess } from './support/processes.ts';
import { pdf, sha256 } from './support/samples.ts';
import { createTestEnvironment, type TestEnvironment } from './support/testServer.ts';
import { createTusUpload, headOffset } from './support/tusRequests.ts';
import { tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';
import { h264Clip } from './support/videoSamples.ts';

/**
 * Drills of the scale-out setup (Postgres + S3 shared by separate server and worker processes):
 * SIGKILL a server 10 times mid-upload and a worker 10 times mid-job, SIGTERM a server with
 * PATCHes in flight. Nothing may be lost, done twice or stored twice. Each drill prints its
 * counts (the README's figures come from these lines).
 */

const MiB = 1024 * 1024;
const kills = 10;
const shutdownGraceMs = 2_000;

const random = (min: number, max: number) => min + Math.random() * (max - min);

afterEach(async () => {
  await killAll();
});

describe('drills (scaleout)', () => {
  let environment: TestEnvironment;
  let db: pg.Client;
  let s3: S3Client;

  beforeAll(async () => {
    environment = await createTestEnvironment('scaleout', {
      RUN_JOBS: 'false',
      // Short leases: a killed worker's job is claimed again 2 s after its last heartbeat.
      JOB_LEASE: '2s',
      // Random kills may hit one job many times; that must cost a re-run, never the upload.
      JOB_MAX_ATTEMPTS: '30',
      WORKER_THREADS: '1',
      SHUTDOWN_GRACE: `${shutdownGraceMs}ms`,
    });
    db = new pg.Client({ connectionString: environment.env.DATABASE_URL });
    await db.connect();
    s3 = testS3Client();
  });
  afterAll(async () => {
    await killAll();
    s3?.destroy();
    await db?.end();
    await environment?.destroy();
  });

  /** The original as the API gives it back (an S3 redirect, followed). */
  async function downloadedSha256(baseUrl: string, id: string): Promise<string> {
    const res = await fetch(`${baseUrl}/api/uploads/${id}/files/original`);
    expect(res.status).toBe(200);
    return sha256(Buffer.from(await res.arrayBuffer()));
  }

  it(`server SIGKILLed ${kills} times mid-upload: tus-js-client resumes each time, the file ends whole and ready`, async () => {
    // One port for every server process: the upload URL tus-js-client resumes names it.
    const env = { ...environment.env, PORT: String(await freePort()) };
    const servers: ServerProcess[] = [await startServerProcess(env)];
    const worker = await startWorkerProcess(environment.env);
    const data = pdf(6 * MiB);

    // Each kill when the client has sent past a random offset, so always in the middle of a PATCH.
    const killAt = Array.from({ length: kills }, () => Math.floor(random(0.05, 0.95) * data.length)).sort((a, b) => a - b);
    const killedAtBytes: number[] = [];
    const restartMs: number[] = [];
    let restarting: Promise<void> | undefined;
    let restartFailed: unknown;
    // tus-js-client resumes with a HEAD of the upload URL; counted as the client saw them answered.
    let resumes = 0;
    const upload = tusUpload(servers[0]!.url, data, {
      filename: 'drill.pdf',
      filetype: 'application/pdf',
      chunkSize: 512 * 1024,
      // A minute, to outlast a restart on a busy machine; tus-js-client starts them over after any progress.
      retryDelays: Array.from({ length: 120 }, () => 500),
      onResponse: (method) => {
        if (method === 'HEAD') resumes += 1;
      },
      onProgress: (sent) => {
        const next = killAt[killedAtBytes.length];
        if (restarting || next === undefined || sent < next) return;
        killedAtBytes.push(sent);
        restarting = (async () => {
          await servers.at(-1)!.kill('SIGKILL');
          const killedAt = Date.now();
          servers.push(await startServerProcess(env));
          restartMs.push(Date.now() - killedAt);
        })()
          .catch((error: unknown) => {
            restartFailed = error;
          })
          .finally(() => (restarting = undefined));
      },
    });
    const { url } = await upload.catch((error: unknown) => Promise.reject(restartFailed ?? new Error(`${String(error)}; restarts so far took ${restartMs.join(", ")} ms`)));
    await restarting;
    if (restartFailed) throw restartFailed;
    const id = uploadIdOf(url);
    expect(killedAtBytes).toHaveLength(kills);
    expect(servers.slice(0, -1).map((s) => s.exit()?.signal)).toEqual(Array(kills).fill('SIGKILL'));

    const server = servers.at(-1)!;
    const status = await waitUntilSettled(server.url, id, 60_000);
    expect(status).toMatchObject({ status: 'ready', size: data.length, sha256: sha256(data) });
    expect(await downloadedSha256(server.url, id)).toBe(sha256(data));

    // The client resumed (HEAD answered). Not once per kill: a PATCH's progress counts bytes the
    // kernel took, so a second kill can land before the client has noticed the first.
    expect(resumes).toBeGreaterThan(0);
    const patches = servers.flatMap((p) => p.logs.filter((l) => l.msg === 'request' && l.method === 'PATCH' && l.path === `/files/${id}`)).length;
    console.info(`[drill] server SIGKILL: ${kills} kills at bytes ${killedAtBytes.join(', ')} of ${data.length}; ${resumes} resumes (HEAD), ${patches} PATCHes answered; restarts took ${Math.min(...restartMs)}–${Math.max(...restartMs)} ms; sha256 whole, ready`);
    await Promise.all([server.kill('SIGTERM'), worker.kill('SIGTERM')]);
  }, 150_000);

  interface JobRow {
    id: string;
    upload_id: string;
    kind: string;
    status: string;
    attempts: number;
    lease_holder: string | null;
  }
  const jobsOf = async (uploadIds: string[]) =>
    (await db.query<JobRow>('select id, upload_id, kind, status, attempts, lease_holder from jobs where upload_id = any($1) order by id', [uploadIds])).rows;

  it(`worker SIGKILLed ${kills} times mid-job: every job done once, one output of each name, every upload ready`, async () => {
    const server = await startServerProcess(environment.env);
    const samples = await makeSampleDir();
    const files = await Promise.all([
      cameraJpeg(samples.dir, 4000, 3000, 'a.jpg'),
      h264Clip(samples.dir, { seconds: 4, width: 1280, height: 720, name: 'a.mp4' }),
      cameraJpeg(samples.dir, 3000, 4000, 'b.jpg'),
      h264Clip(samples.dir, { seconds: 4, width: 720, height: 1280, name: 'b.mp4' }),
    ]);
    const uploads: { id: string; kind: 'image' | 'video' }[] = [];
    for (const file of files) {
      const video = file.endsWith('.mp4');
      const { url } = await tusUpload(server.url, await fs.readFile(file), { filename: file.split('/').pop()!, filetype: video ? 'video/mp4' : 'image/jpeg' });
      uploads.push({ id: uploadIdOf(url), kind: video ? 'video' : 'image' });
    }
    await samples.cleanup();
    const ids = uploads.map((u) => u.id);

    // A worker at a time; each is SIGKILLed a random moment into a job it runs, and replaced.
    const workers: WorkerProcess[] = [];
    const killed: JobRow[] = [];
    while (killed.length < kills) {
      const worker = await startWorkerProcess(environment.env);
      workers.push(worker);
      const victim = await eventually(
        `a job running in worker ${workers.length} (${killed.length} kills so far)`,
        async () => {
          const jobs = await jobsOf(ids);
          if (jobs.every((j) => j.status === 'done')) throw new Error(`every job was done after ${killed.length} kills: the drill needs longer jobs`);
          // Only a job of a kind killed least so far (of the kinds not finished): kills spread over inspect, image and video.
          const killsOf = (kind: string) => killed.filter((k) => k.kind === kind).length;
          const fewest = Math.min(...jobs.filter((j) => j.status !== 'done').map((j) => killsOf(j.kind)));
          const running = jobs.find((j) => j.status === 'running' && j.lease_holder === worker.workerId && killsOf(j.kind) === fewest);
          if (!running) return undefined;
          await sleep(random(0, 500));
          const [now] = (await jobsOf([running.upload_id])).filter((j) => j.id === running.id);
          // Still this run's: the kill lands mid-job.
          return now?.status === 'running' && now.lease_holder === worker.workerId && now.attempts === running.attempts && now;
        },
        120_000,
        25,
      );
      await worker.kill('SIGKILL');
      killed.push(victim);
    }
    const lastWorker = await startWorkerProcess(environment.env);
    workers.push(lastWorker);
    for (const id of ids) expect((await waitUntilSettled(server.url, id, 120_000)).status).toBe('ready');

    // Every job done, none logged 'job done' twice across every worker that ever ran. A job may
    // have no line: committed just as its worker was killed (the kill aims at another job of it).
    const jobs = await jobsOf(ids);
    expect(jobs.map((j) => j.status)).toEqual(Array(uploads.length * 2).fill('done'));
    const doneLines = workers.flatMap((w) => w.logs.filter((l) => l.msg === 'job done' && ids.includes(l.upload as string)));
    const doneJobs = doneLines.map((l) => String(l.job));
    expect(doneJobs.length).toBe(new Set(doneJobs).size);
    const unlogged = jobs.length - doneJobs.length;

    // One outputs row per (upload, name), and in the bucket one object per output, nothing else.
    const { rows: outputs } = await db.query<{ upload_id: string; name: string; storage_key: string }>(
      'select upload_id, name, storage_key from outputs where upload_id = any($1)',
      [ids],
    );
    const { Contents = [] } = await s3.send(new ListObjectsV2Command({ Bucket: environment.env.S3_BUCKET, Prefix: 'outputs/' }));
    const { Uploads: unfinishedParts = [] } = await s3.send(new ListMultipartUploadsCommand({ Bucket: environment.env.S3_BUCKET, Prefix: 'outputs/' }));
    const expected = uploads.flatMap((u) => expectedOutputs[u.kind].map((name) => `outputs/${u.id}/${name}`)).sort();
    expect(outputs.map((o) => o.storage_key).sort()).toEqual(expected);
    expect(Contents.map((o) => o.Key).sort()).toEqual(expected);
    expect(unfinishedParts).toEqual([]);

    const reRuns = jobs.reduce((sum, j) => sum + j.attempts - 1, 0);
    const killedKinds = killed.map((j) => j.kind);
    console.info(
      `[drill] worker SIGKILL: ${kills} kills mid-job (${['inspect', 'image', 'video'].map((k) => `${k} ${killedKinds.filter((x) => x === k).length}`).join(', ')}); ` +
        `${jobs.length} jobs, ${reRuns} runs lost to kills and run again, 'job done' never twice (${unlogged} committed as their worker died); ${outputs.length} outputs rows, ${Contents.length} objects, duplicates 0`,
    );
    await Promise.all([lastWorker.kill('SIGTERM'), server.kill('SIGTERM')]);
  }, 240_000);

  /**
   * A PATCH of `body` (the upload's bytes from `offset` on) sent `chunk` bytes every `everyMs`,
   * as a slow phone would; tells how many bytes were handed to the socket and how it ended.
   */
  function tricklePatch(fileUrl: string, body: Buffer, offset: number, chunk: number, everyMs: number, agent?: http.Agent) {
    const req = http.request(fileUrl, {
      method: 'PATCH',
      agent,
      headers: { 'Tus-Resumable': '1.0.0', 'Upload-Offset': offset, 'Content-Type': 'application/offset+octet-stream', 'Content-Length': body.length },
    });
    let written = 0;
    const ended = new Promise<{ status?: number; error?: string }>((resolve) => {
      req.on('response', (res) => {
        res.resume();
        resolve({ status: res.statusCode });
      });
      req.on('error', (err) => resolve({ error: err.message }));
    });
    void (async () => {
      while (written < body.length && !req.destroyed) {
        const piece = body.subarray(written, written + chunk);
        const error = await new Promise<Error | null | undefined>((resolve) => req.write(piece, resolve));
        if (error) return;
        written += piece.length;
        await sleep(everyMs);
      }
      req.end();
    })();
    return { ended, written: () => written };
  }

  it('SIGTERM with PATCHes in flight: they end within SHUTDOWN_GRACE, the server exits 0, each upload resumes whole', async () => {
    const server = await startServerProcess(environment.env);
    const worker = await startWorkerProcess(environment.env);
    const files = [pdf(1 * MiB), pdf(3 * MiB), pdf(3 * MiB + 12345)];
    const urls = await Promise.all(files.map((data, i) => createTusUpload(server.url, data.length, { filename: `slow${i}.pdf`, filetype: 'application/pdf' })));
    // The first would finish within the grace (on a keep-alive connection, which must close after
    // its answer); the others trickle on well past it.
    const keepAlive = new http.Agent({ keepAlive: true });
    const patches = [
      tricklePatch(urls[0]!, files[0]!, 0, 64 * 1024, 40, keepAlive),
      tricklePatch(urls[1]!, files[1]!, 0, 16 * 1024, 50),
      tricklePatch(urls[2]!, files[2]!, 0, 16 * 1024, 50),
    ];
    await eventually('every PATCH under way', async () => patches.every((p) => p.written() >= 256 * 1024));
    const writtenAtSigterm = patches.map((p) => p.written());
    const sigtermAt = Date.now();
    // A hang detector, not a speed bound: the trickling answers below show the grace was not exceeded.
    const exit = await server.kill('SIGTERM', shutdownGraceMs + 45_000);
    const stoppedMs = Date.now() - sigtermAt;
    const endings = await Promise.all(patches.map((p) => p.ended));
    keepAlive.destroy();

    expect(exit, server.describe()).toEqual({ code: 0, signal: null });
    expect(stoppedMs).toBeGreaterThanOrEqual(shutdownGraceMs - 100);
    expect(endings[0]).toEqual({ status: 204 });
    // The trickling ones: their connection closed, no answer (the server stored what arrived first).
    for (const ending of endings.slice(1)) expect(ending.error).toMatch(/socket hang up|ECONNRESET|EPIPE/);
    expect(server.logs.find((l) => l.msg?.startsWith('closing the connections'))).toMatchObject({ requests: 2 });

    const next = await startServerProcess(environment.env);
    const resumedAt: number[] = [];
    for (const [i, data] of files.entries()) {
      const id = uploadIdOf(urls[i]!);
      const url = `${next.url}/files/${id}`;
      const offset = await headOffset(url);
      resumedAt.push(offset);
      // Everything sent before the SIGTERM arrived during the grace and was stored; no byte more than was sent.
      expect(offset).toBeGreaterThanOrEqual(writtenAtSigterm[i]!);
      expect(offset).toBeLessThanOrEqual(patches[i]!.written());
      if (offset < data.length) await tusUpload(next.url, data, { uploadUrl: url, filename: `slow${i}.pdf`, filetype: 'application/pdf' });
      expect(await waitUntilSettled(next.url, id, 60_000)).toMatchObject({ status: 'ready', sha256: sha256(data) });
      expect(await downloadedSha256(next.url, id)).toBe(sha256(data));
    }
    console.info(
      `[drill] SIGTERM: ${patches.length} PATCHes in flight; exit 0 after ${stoppedMs} ms (SHUTDOWN_GRACE ${shutdownGraceMs} ms); ` +
        `endings ${endings.map((e) => e.status ?? e.error).join(' / ')}; resumed at ${resumedAt.join(', ')} (sent before SIGTERM ${writtenAtSigterm.join(', ')}); sha256 whole`,
    );
    await Promise.all([next.kill('SIGTERM'), worker.kill('SIGTERM')]);
  }, 120_000);
});
