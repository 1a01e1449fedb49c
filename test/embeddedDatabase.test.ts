import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, startServerProcess, startWorkerProcess } from './support/processes.ts';
import { pdf, sha256 } from './support/samples.ts';
import { createTestEnvironment, type TestEnvironment } from './support/testServer.ts';
import { fetchStatus, tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';

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
});
