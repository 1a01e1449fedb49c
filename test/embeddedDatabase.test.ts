import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from './support/eventually.ts';
import { freePort } from './support/freePort.ts';
import { killAll, startServerProcess, startWorkerProcess, type ServerProcess } from './support/processes.ts';
import { pdf, sha256 } from './support/samples.ts';
import { createTestEnvironment, type TestEnvironment } from './support/testServer.ts';
import { fetchStatus, tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';

const MiB = 1024 * 1024;

/**
 * Crash restarts: the server's whole process group (node and its Postgres) SIGKILLed, as an OOM
 * kill or a container runtime ends it, and started again 0.5 s later, as a supervisor would,
 * while the dead postmaster may not be reaped yet. Every start must come up, and every upload in
 * flight resume whole.
 */
const rounds = 10;
const restartDelayMs = 500;
const files = 3;

/** The embedded server's pid, from its postmaster.pid; undefined when none is running. */
function postmasterPid(environment: TestEnvironment): number | undefined {
  const file = path.join(environment.dataDir, 'postgres', 'postmaster.pid');
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

/** The socket folder postmaster.pid names: the way other processes reach the embedded server. */
function socketUrl(environment: TestEnvironment): string {
  const lines = readFileSync(path.join(environment.dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n');
  return `postgres://postgres@localhost/postgres?host=${encodeURIComponent(lines[4]!)}`;
}

describe('the embedded database (no DATABASE_URL)', () => {
  let environment: TestEnvironment;

  beforeAll(async () => {
    environment = await createTestEnvironment('embedded');
  });
  afterAll(async () => {
    await killAll();
    await environment?.destroy();
  });

  it('is a real Postgres server whose records survive a restart, a kill, and stops with its server', async () => {
    const first = await startServerProcess(environment.env);
    const client = new pg.Client({ connectionString: socketUrl(environment) });
    await client.connect();
    const { rows } = await client.query<{ server_version: string }>('show server_version');
    await client.end();
    expect(rows[0]!.server_version).toMatch(/^18\./);

    const data = pdf(200_000);
    const { url } = await tusUpload(first.url, data, { filename: 'kept.pdf', filetype: 'application/pdf' });
    const id = uploadIdOf(url);
    expect(await waitUntilSettled(first.url, id, 60_000)).toMatchObject({ status: 'ready', sha256: sha256(data) });

    // A clean stop stops the database too; the next start finds the records on disk.
    expect(await first.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(postmasterPid(environment)).toBeUndefined();
    const second = await startServerProcess(environment.env);
    expect(await fetchStatus(second.url, id)).toMatchObject({ status: 'ready', filename: 'kept.pdf', sha256: sha256(data) });

    // Killed, the server leaves its database running: the next server takes it over and stops it.
    const orphan = postmasterPid(environment);
    expect(orphan).toBeDefined();
    await second.kill('SIGKILL');
    expect(postmasterPid(environment)).toBe(orphan);
    const third = await startServerProcess(environment.env);
    expect(postmasterPid(environment)).toBe(orphan);
    expect(await fetchStatus(third.url, id)).toMatchObject({ status: 'ready', filename: 'kept.pdf' });
    expect(await third.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(postmasterPid(environment)).toBeUndefined();
  }, 300_000);

  it('is shared by npm run worker: a server that runs no jobs gets its uploads processed by the worker', async () => {
    const server = await startServerProcess({ ...environment.env, RUN_JOBS: 'false' });
    const worker = await startWorkerProcess(environment.env);
    const data = pdf(300_000);
    const { url } = await tusUpload(server.url, data, { filename: 'by-worker.pdf', filetype: 'application/pdf' });
    const status = await waitUntilSettled(server.url, uploadIdOf(url), 60_000);
    expect(status, worker.describe()).toMatchObject({ status: 'ready', scan: 'clean', sha256: sha256(data) });

    // The worker only used the server's database: stopping it leaves the server working.
    expect(await worker.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(await fetchStatus(server.url, uploadIdOf(url))).toMatchObject({ status: 'ready' });
    expect(await server.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(postmasterPid(environment)).toBeUndefined();
  }, 300_000);

  it(`${rounds} rounds of SIGKILL to the process group and a start ${restartDelayMs} ms later: every start comes up, every upload resumes whole`, async () => {
    // One port for every server process: the upload URLs the clients resume name it.
    const env = { ...environment.env, PORT: String(await freePort()) };
    const servers: ServerProcess[] = [await startServerProcess(env)];
    const endpoint = servers[0]!.url;
    const data = Array.from({ length: files }, (_, i) => pdf((12 + i) * MiB));
    const sent = data.map(() => 0);
    const creations = data.map(() => 0);
    const uploads = data.map((bytes, i) =>
      tusUpload(endpoint, bytes, {
        filename: `crash-${i}.pdf`,
        filetype: 'application/pdf',
        chunkSize: 256 * 1024,
        // Slow enough to be in flight through every round.
        pauseBeforeEachRequestMs: 50,
        // Two minutes of retries: a restart on a busy machine must not outlast them.
        retryDelays: Array.from({ length: 240 }, () => 500),
        onProgress: (bytesSent) => (sent[i] = bytesSent),
        onResponse: (method) => {
          if (method === 'POST') creations[i]! += 1;
        },
      }).then((result) => {
        sent[i] = bytes.length;
        return result;
      }),
    );

    const inFlightAtKill: number[] = [];
    const startMs: number[] = [];
    for (let round = 0; round < rounds; round++) {
      // Each kill after the clients moved on since the last start: mid-PATCH, not while they wait to retry.
      const before = sent.reduce((a, b) => a + b, 0);
      await eventually(`progress after start ${round}`, async () => sent.reduce((a, b) => a + b, 0) > before, 120_000);
      inFlightAtKill.push(sent.filter((s, i) => s < data[i]!.length).length);
      const killed = await servers.at(-1)!.killGroup('SIGKILL');
      expect(killed.signal).toBe('SIGKILL');
      await sleep(restartDelayMs);
      const starting = Date.now();
      servers.push(await startServerProcess(env));
      startMs.push(Date.now() - starting);
    }
    const results = await Promise.all(uploads);

    expect(inFlightAtKill.every((n) => n > 0), `uploads in flight at each kill: ${inFlightAtKill.join(', ')}`).toBe(true);
    expect(servers.slice(0, -1).map((s) => s.exit()?.signal)).toEqual(Array(rounds).fill('SIGKILL'));
    // Resumed, never started over.
    expect(creations).toEqual(data.map(() => 1));
    const server = servers.at(-1)!;
    for (const [i, { url }] of results.entries()) {
      expect(url.startsWith(endpoint)).toBe(true);
      expect(await waitUntilSettled(server.url, uploadIdOf(url), 60_000)).toMatchObject({ status: 'ready', size: data[i]!.length, sha256: sha256(data[i]!) });
    }
    const recovered = servers.flatMap((s) => s.logs.filter((l) => l.msg === 'embedded postgres: removed the lock file of a dead server')).length;
    console.info(`[drill] embedded crash restart: ${rounds} group SIGKILLs, starts ${restartDelayMs} ms later all up (each took ${Math.min(...startMs)}–${Math.max(...startMs)} ms to listen); uploads in flight per kill ${inFlightAtKill.join(', ')}; stale lock files removed ${recovered}; ${files} files whole, 1 creation each`);
    expect(await server.kill('SIGTERM')).toEqual({ code: 0, signal: null });
  }, 600_000);

  it('starts when postmaster.pid names a pid that now runs another program (a reboot or a new container reused it)', async () => {
    const server = await startServerProcess(environment.env);
    await server.killGroup('SIGKILL');
    // This test's own pid in both lock files (the cluster's and its socket's): alive, and not a postgres.
    const lockFile = path.join(environment.dataDir, 'postgres', 'postmaster.pid');
    const lines = (await fs.readFile(lockFile, 'utf8')).split('\n');
    for (const file of [lockFile, path.join(lines[4]!, '.s.PGSQL.5432.lock')]) {
      const text = (await fs.readFile(file, 'utf8')).split('\n');
      await fs.writeFile(file, [String(process.pid), ...text.slice(1)].join('\n'));
    }
    const again = await startServerProcess(environment.env);
    expect(again.logs.find((l) => l.msg === 'embedded postgres: removed the lock file of a dead server')).toMatchObject({ pid: process.pid });
    expect(await again.kill('SIGTERM')).toEqual({ code: 0, signal: null });
  }, 300_000);
});
