import fs from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { killAll, runUntilExit, startServerProcess, startWorkerProcess, type ChildUnderTest, type LogLine, type ServerProcess, type WorkerProcess } from './support/processes.ts';
import { cameraJpeg } from './support/imageSamples.ts';
import { pdf, sha256 } from './support/samples.ts';
import { clamdSocket } from './services/env.ts';
import { createTestEnvironment, setups, type TestEnvironment } from './support/testServer.ts';
import { tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';
import { eventually } from './support/eventually.ts';
import { createTusUpload, headOffset, patch } from './support/tusRequests.ts';

/**
 * Real processes, real kills: `server/main/server.ts` and `server/main/worker.ts` run as child processes
 * and are SIGKILLed in the middle of their work, as a crash or an OOM kill would stop them.
 */

const MiB = 1024 * 1024;

afterEach(async () => {
  await killAll();
});


/**
 * A PATCH for everything from `offset` on, of which only `send` bytes are sent: the request
 * stays open, as a slow client's would, until the server goes away under it.
 */
function stalledPatch(fileUrl: string, data: Buffer, offset: number, send: number) {
  const req = http.request(fileUrl, {
    method: 'PATCH',
    headers: {
      'Tus-Resumable': '1.0.0',
      'Upload-Offset': offset,
      'Content-Type': 'application/offset+octet-stream',
      'Content-Length': data.length - offset,
    },
  });
  const ended = new Promise<string>((resolve) => {
    req.on('response', (res) => resolve(`unexpected response ${res.statusCode}`));
    req.on('error', (err) => resolve(`error: ${err.message}`));
  });
  const written = new Promise<void>((resolve) => req.write(data.subarray(offset, offset + send), () => resolve()));
  return { written, ended };
}

/**
 * A unix-socket proxy in front of clamd that passes what workers send on at `bytesPerSecond`
 * (clamd's answers go back unthrottled): a scanner on a busy machine, slow enough that a job
 * can be caught and killed in the middle of it. It also tells how far each scan has got.
 */
async function slowClamd(target: string, socketPath: string, bytesPerSecond: number) {
  const scans: { forwarded: number }[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const scan = { forwarded: 0 };
    scans.push(scan);
    const upstream = net.connect(target);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    // A killed worker's connection closes: clamd's must close too.
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    upstream.pipe(client);
    client.on('end', () => upstream.end());
    client.on('data', (chunk: Buffer) => {
      client.pause();
      scan.forwarded += chunk.length;
      const flushed = upstream.write(chunk) ? Promise.resolve() : new Promise((r) => upstream.once('drain', r));
      void Promise.all([flushed, sleep((chunk.length / bytesPerSecond) * 1000)]).then(() => client.resume());
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
  return {
    scans,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function logsOf(processes: ChildUnderTest[], test: (line: LogLine) => boolean) {
  return processes.flatMap((p) => p.logs.filter(test).map((line) => ({ process: p, line })));
}

describe.each(setups)('a server killed during an upload (%s)', (setup) => {
  let environment: TestEnvironment;

  beforeAll(async () => {
    environment = await createTestEnvironment(setup);
  });
  afterAll(async () => {
    await killAll();
    await environment?.destroy();
  });

  it('resumes on a new server process and ends ready with the same bytes', async () => {
    const data = pdf(40e6);
    const first = await startServerProcess(environment.env);
    const fileUrl = await createTusUpload(first.url, data.length, { filename: 'big.pdf', filetype: 'application/pdf' });
    const id = uploadIdOf(fileUrl);

    // Two whole 4 MiB PATCHes, then one that stops sending after 12 MiB and stays open.
    let offset = await patch(fileUrl, data, 0, 4 * MiB);
    offset = await patch(fileUrl, data, offset, 4 * MiB);
    expect(offset).toBe(8 * MiB);
    const inFlight = stalledPatch(fileUrl, data, offset, 12 * MiB);
    await inFlight.written;
    if (setup === 'embedded') {
      // The folder store writes as bytes arrive: wait until part of this PATCH is on disk.
      const file = path.join(environment.dataDir, 'uploads', id);
      await eventually('bytes of the open PATCH on disk', async () => (await fs.stat(file)).size > offset + 4 * MiB, 30_000);
    } else {
      // The S3 store sends 8 MiB parts: give it time to send one of this PATCH's parts.
      await sleep(2_000);
    }
    expect(first.exit()).toBeUndefined();
    const killed = await first.kill('SIGKILL');
    expect(killed.signal).toBe('SIGKILL');
    expect(await inFlight.ended).toMatch(/^error:/);

    const second = await startServerProcess(environment.env);
    // A new process may listen on another port: the upload is found by its id.
    const resumeUrl = `${second.url}/files/${id}`;
    const resumedAt = await headOffset(resumeUrl);
    expect(resumedAt).toBeGreaterThanOrEqual(8 * MiB);
    expect(resumedAt).toBeLessThanOrEqual(20 * MiB);
    if (setup === 'embedded') expect(resumedAt).toBeGreaterThan(12 * MiB);

    const resumed = await tusUpload(second.url, data, { uploadUrl: resumeUrl, chunkSize: 8 * MiB, filename: 'big.pdf', filetype: 'application/pdf' });
    expect(resumed.aborted).toBe(false);
    const status = await waitUntilSettled(second.url, id, 180_000);
    expect(status).toMatchObject({ status: 'ready', size: data.length, sha256: sha256(data), detectedType: 'application/pdf', scan: 'clean' });

    const res = await fetch(`${second.url}/api/uploads/${id}/files/original`);
    expect(res.status).toBe(200);
    const downloaded = Buffer.from(await res.arrayBuffer());
    expect(downloaded.length).toBe(data.length);
    expect(sha256(downloaded)).toBe(sha256(data));

    const stopped = await second.kill('SIGTERM');
    expect(stopped, second.describe()).toEqual({ code: 0, signal: null });
    // Its logs are JSON lines on stdout, Node's and libraries' warnings included: there are none
    // (the AWS SDK warns on every Node older than 22).
    expect(second.stderr()).toBe('');
    expect(second.logs.filter((line) => line.warning !== undefined)).toEqual([]);
  }, 420_000);
});

describe('a worker killed during a job (scaleout)', () => {
  const leaseMs = 2_000;
  let environment: TestEnvironment;
  let db: pg.Client;
  let clamd: Awaited<ReturnType<typeof slowClamd>>;

  beforeAll(async () => {
    environment = await createTestEnvironment('scaleout', { RUN_JOBS: 'false', JOB_LEASE: `${leaseMs}ms`, WORKER_THREADS: '1' });
    db = new pg.Client({ connectionString: environment.env.DATABASE_URL });
    await db.connect();
    // 45 MB at 10 MB/s: a scan takes ~4.5 s (clamd itself needs well under a second for it).
    clamd = await slowClamd(clamdSocket, path.join(environment.dataDir, 'clamd-slow.sock'), 10e6);
  });
  afterAll(async () => {
    await killAll();
    await clamd?.close();
    await db?.end();
    await environment?.destroy();
  });

  interface JobRow {
    id: string;
    status: string;
    attempts: number;
    lease_holder: string | null;
    remaining_ms: number | null;
    result: Record<string, unknown> | null;
  }
  async function jobsOf(uploadId: string): Promise<JobRow[]> {
    const { rows } = await db.query<JobRow>(
      `select id, status, attempts, lease_holder, result,
              extract(epoch from (lease_expires_at - now())) * 1000 as remaining_ms
         from jobs where upload_id = $1 order by id`,
      [uploadId],
    );
    return rows.map((r) => ({ ...r, remaining_ms: r.remaining_ms === null ? null : Number(r.remaining_ms) }));
  }

  it('hands the job to another worker once the lease runs out; it finishes once', async () => {
    const server = await startServerProcess(environment.env);
    // Two workers: the one that does not get the job must leave it alone while the other's
    // heartbeats keep its lease, and take it over only after that worker is gone.
    const workerEnv = { ...environment.env, CLAMD_SOCKET: path.join(environment.dataDir, 'clamd-slow.sock') };
    const workers = await Promise.all([startWorkerProcess(workerEnv), startWorkerProcess(workerEnv)]);
    expect(workers[0].workerId).not.toBe(workers[1].workerId);

    // 45 MB, under the 50 MiB PDF limit, through the slow clamd.
    const data = pdf(45e6);
    const { url } = await tusUpload(server.url, data, { filename: 'big.pdf', filetype: 'application/pdf', chunkSize: 16 * MiB });
    const id = uploadIdOf(url);

    const running = await eventually(
      'the inspect job to run',
      async () => {
        const [job] = await jobsOf(id);
        if (job && job.status !== 'queued' && job.status !== 'running') throw new Error(`the job was ${job.status} before it could be caught running: ${JSON.stringify(job)}`);
        return job?.status === 'running' && job;
      },
      60_000,
      25,
    );
    const holder = workers.find((w) => w.workerId === running.lease_holder);
    const survivor = workers.find((w) => w !== holder)!;
    expect(holder, `lease holder ${running.lease_holder} is none of ${workers.map((w) => w.workerId)}`).toBeDefined();
    expect(running.attempts).toBe(1);

    // Kill it two thirds into the scan: ~3 s in, past the 2 s lease its heartbeats renewed
    // (the other worker, polling all along, must not have taken the job meanwhile).
    await eventually('the scan to be two thirds through', async () => clamd.scans.length === 1 && clamd.scans[0]!.forwarded >= 30e6, 60_000, 10);

    await holder!.kill('SIGKILL');
    const killedAt = Date.now();
    const [atKill] = await jobsOf(id);
    expect(atKill, 'inspect finished before the worker could be killed').toMatchObject({ status: 'running', lease_holder: holder!.workerId, attempts: 1 });
    const leaseLeftMs = atKill!.remaining_ms!;
    expect(leaseLeftMs).toBeGreaterThan(0);
    expect(leaseLeftMs).toBeLessThanOrEqual(leaseMs);

    // The survivor takes the job over, but not before the dead worker's lease has run out.
    const takenOver = await eventually(
      'the surviving worker to take the job over',
      async () => {
        const [job] = await jobsOf(id);
        return job?.lease_holder === survivor.workerId || job?.status === 'done' ? job : undefined;
      },
      60_000,
      25,
    );
    const takenAfterMs = Date.now() - killedAt;
    expect(takenAfterMs).toBeGreaterThanOrEqual(leaseLeftMs - 250);

    const finished = await eventually('the job to be done', async () => {
      const [job] = await jobsOf(id);
      return job?.status === 'done' && job;
    }, 180_000, 200);
    const rows = await jobsOf(id);
    expect(rows).toHaveLength(1);
    // The survivor scanned the whole file again from the start.
    expect(clamd.scans).toHaveLength(2);
    expect(clamd.scans[1]!.forwarded).toBeGreaterThan(data.length);
    expect(finished).toMatchObject({ status: 'done', attempts: 2, lease_holder: null });
    expect(finished.result).toMatchObject({ sha256: sha256(data), size: data.length, scan: { status: 'clean' } });
    expect(takenOver.attempts).toBe(2);

    const status = await waitUntilSettled(server.url, id, 30_000);
    expect(status).toMatchObject({ status: 'ready', sha256: sha256(data), size: data.length, scan: 'clean' });

    // Done exactly once, by the survivor, on the second attempt.
    const doneLines = logsOf([...workers, server], (l) => l.msg === 'job done' && l.upload === id);
    expect(doneLines.map((d) => [d.process.pid, d.line.attempt])).toEqual([[survivor.pid, 2]]);

    const stopped = await survivor.kill('SIGTERM');
    expect(stopped, survivor.describe()).toEqual({ code: 0, signal: null });
    expect(survivor.logs.some((l) => l.msg?.startsWith('stopping'))).toBe(true);
    await server.kill('SIGTERM');
  }, 420_000);

  it('runs the cleanup in worker processes too (the servers here run no jobs)', async () => {
    // The worker migrates the database as it starts; the expired upload is added after.
    const worker = await startWorkerProcess({ ...environment.env, CLEANUP_INTERVAL: '1s' });
    const id = `expired${Date.now()}`;
    await db.query(
      `insert into uploads (id, safe_filename, storage_key, status, tus_metadata, size, expires_at)
       values ($1, 'late.pdf', $1, 'uploading', '{}', 10, now() - interval '1 minute')`,
      [id],
    );
    const row = await eventually(
      'the worker to expire the upload',
      async () => {
        const { rows } = await db.query<{ status: string; reason: string }>('select status, reason from uploads where id = $1', [id]);
        return rows[0]?.status === 'expired' && rows[0];
      },
      30_000,
    );
    expect(row.reason).toMatch(/^not finished before /);
    await worker.kill('SIGTERM');
  }, 120_000);
});

describe('process lifecycle', () => {
  let environment: TestEnvironment;

  beforeAll(async () => {
    environment = await createTestEnvironment('embedded');
  });
  afterAll(async () => {
    await killAll();
    await environment?.destroy();
  });

  it('turns an image into its outputs in the process `npm start` runs (its node flags included)', async () => {
    const server = await startServerProcess(environment.env);
    const jpeg = await fs.readFile(await cameraJpeg(environment.dataDir, 1200, 900));
    const { url } = await tusUpload(server.url, jpeg, { filename: 'photo.jpg', filetype: 'image/jpeg' });
    const status = await waitUntilSettled(server.url, uploadIdOf(url), 60_000);
    expect(status.status, JSON.stringify(status)).toBe('ready');
    expect(status.outputs.map((o) => o.name).sort()).toEqual(['resized', 'thumbnail', 'webp']);
  }, 180_000);

  it('exits 0 on SIGTERM after logging that it stops', async () => {
    const server: ServerProcess = await startServerProcess(environment.env);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    const exit = await server.kill('SIGTERM', 60_000);
    expect(exit, server.describe()).toEqual({ code: 0, signal: null });
    const stopping = server.logs.find((l) => l.msg?.startsWith('stopping'));
    expect(stopping, server.describe()).toMatchObject({ signal: 'SIGTERM' });
  }, 180_000);

  describe('bad settings stop the start', () => {
    let dataDir: string;
    beforeAll(async () => {
      dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'bad-settings-'));
    });
    afterAll(async () => {
      await fs.rm(dataDir, { recursive: true, force: true });
    });

    const cases: [string, Record<string, string>, RegExp[]][] = [
      ['PORT=abc', { PORT: 'abc' }, [/PORT: "abc"/]],
      ['SCAN=required without clamd', { SCAN: 'required' }, [/SCAN: .*CLAMD_SOCKET or CLAMD_HOST/]],
      ['S3_PART_SIZE=1', { S3_BUCKET: 'uploads', S3_PART_SIZE: '1' }, [/S3_PART_SIZE: "1"/]],
      // Read as milliseconds this would be 86 seconds, not the day meant.
      ['UPLOAD_EXPIRES_AFTER=86400 (no unit)', { UPLOAD_EXPIRES_AFTER: '86400' }, [/UPLOAD_EXPIRES_AFTER: "86400" has no unit/]],
      ['EMBEDDED_POSTGRES_USER with DATABASE_URL', { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', EMBEDDED_POSTGRES_USER: 'nobody' }, [/EMBEDDED_POSTGRES_USER: /]],
      ['all three at once', { PORT: 'abc', SCAN: 'required', S3_BUCKET: 'uploads', S3_PART_SIZE: '1' }, [/PORT: "abc"/, /SCAN: /, /S3_PART_SIZE: "1"/]],
    ];
    it.each(cases)('%s: exit code 1 and stderr names the setting', async (_name, env, expected) => {
      const result = await runUntilExit('server/main/server.ts', { DATA_DIR: dataDir, HOST: '127.0.0.1', ...env });
      expect(result.code, result.describe).toBe(1);
      for (const pattern of expected) expect(result.stderr).toMatch(pattern);
      // Nothing was started: no database, no listening socket.
      expect(result.stdout).not.toContain('"listening"');
      await expect(fs.access(path.join(dataDir, 'postgres'))).rejects.toThrow();
    }, 120_000);
  });
});
