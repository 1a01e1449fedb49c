import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { hasProcfs, isAlive } from '../processes/liveProcess.ts';
import type { Logger } from '../settings/log.ts';

/**
 * The embedded Postgres's lock file after a crash. Killed with its server's process group, the
 * postmaster stays a zombie until an init that reaps lazily (a container's, or none) gets to it,
 * and Postgres refuses to start while postmaster.pid names a pid that `kill(pid, 0)` still finds.
 * Postgres's own rule is that test alone; here a pid counts as a live postmaster of the cluster
 * only if it is not a zombie and its command line is `postgres -D <this cluster>` (a pid reused
 * by another program after a reboot does not hold the cluster either). Its lock file is removed
 * only once no process is attached to its shared memory any more (backends exit on their own
 * once they see their postmaster gone) — the interlock Postgres itself checks next, keyed by the
 * cluster folder, so a second postmaster can never run on the cluster whatever happens here.
 * Linux only (/proc); elsewhere the lock file is left to Postgres.
 */

/** What postmaster.pid says. Lines: pid, data dir, start time, port, socket dir, listen address, shm key and id, status. */
export interface LockFile {
  pid: number;
  socketDir: string;
  /** The SysV segment the postmaster attached (`key id`), for the interlock. */
  sharedMemory: { key: number; id: number } | undefined;
  text: string;
}

const lockName = 'postmaster.pid';

export async function readLockFile(dir: string): Promise<LockFile | undefined> {
  const text = await fs.readFile(path.join(dir, lockName), 'utf8').catch(() => '');
  const lines = text.split('\n');
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const [key, id] = (lines[6] ?? '').trim().split(/\s+/).map(Number);
  const sharedMemory = Number.isInteger(key) && Number.isInteger(id) ? { key: key!, id: id! } : undefined;
  return { pid, socketDir: lines[4] ?? '', sharedMemory, text };
}

/** Whether `pid` runs `postgres -D dir`; undefined when its command line cannot be read. */
function isPostmasterOf(pid: number, dir: string): boolean | undefined {
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return undefined;
  }
  const dataDir = argv[argv.indexOf('-D') + 1];
  return path.basename(argv[0] ?? '') === 'postgres' && argv.includes('-D') && dataDir !== undefined && path.resolve(dataDir) === path.resolve(dir);
}

/** Processes attached to the lock's SysV segment (0 once it is gone). */
function attachedProcesses(sharedMemory: LockFile['sharedMemory']): number {
  if (!sharedMemory) return 0;
  // Unreadable (a kernel without SysV IPC): Postgres's own check of the segment still stands.
  let table: string;
  try {
    table = readFileSync('/proc/sysvipc/shm', 'utf8');
  } catch {
    return 0;
  }
  for (const row of table.split('\n').slice(1)) {
    // Columns: key shmid perms size cpid lpid nattch …
    const fields = row.trim().split(/\s+/).map(Number);
    if (fields[0] === sharedMemory.key && fields[1] === sharedMemory.id) return fields[6]!;
  }
  return 0;
}

/**
 * Removes `lock` if its postmaster is dead and nothing is attached to its shared memory: `removed`.
 * `live` while a postmaster of the cluster runs, or its backends still hold the shared memory
 * (wait and look again); `unknown` without /proc (Postgres decides).
 */
export async function removeStaleLockFile(dir: string, lock: LockFile, port: number, log: Logger): Promise<'removed' | 'live' | 'unknown'> {
  if (!hasProcfs()) return 'unknown';
  const dead = !isAlive(lock.pid) || isPostmasterOf(lock.pid, dir) === false;
  if (!dead || attachedProcesses(lock.sharedMemory) > 0) return 'live';
  // Renamed, then checked: another process starting at the same time may have removed this one
  // and started a postmaster whose new lock file must stay.
  const file = path.join(dir, lockName);
  const aside = `${file}.stale-${process.pid}`;
  if (!(await fs.rename(file, aside).then(() => true, () => false))) return 'removed';
  if ((await fs.readFile(aside, 'utf8')) !== lock.text) {
    await fs.rename(aside, file);
    return 'live';
  }
  await fs.rm(aside);
  // The socket's lock file names the same pid, and Postgres refuses it the same way.
  const socketLock = path.join(lock.socketDir, `.s.PGSQL.${port}.lock`);
  if (lock.socketDir && Number((await fs.readFile(socketLock, 'utf8').catch(() => '')).split('\n')[0]) === lock.pid) await fs.rm(socketLock, { force: true });
  log.warn({ dir, pid: lock.pid }, 'embedded postgres: removed the lock file of a dead server');
  return 'removed';
}
