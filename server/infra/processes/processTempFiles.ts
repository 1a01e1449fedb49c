import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../settings/log.ts';
import { hasProcfs, isAlive, startTimeOf } from './liveProcess.ts';

/**
 * A process's temp files and folders under $TMPDIR (a checksummed request's body, a media job's
 * work folder) carry who made them: `<kind>-<pid>.<start>-…`, `start` the process's start time
 * (random where there is no /proc). Their owner removes them when done; what a killed process
 * left is removed by the next start or cleanup of any process on the machine, and only that:
 * a file whose pid runs with the same start time is a live process's, and stays.
 */
export type TempKind = 'tus-checksum' | 'media';

const kinds: readonly TempKind[] = ['tus-checksum', 'media'];
const ownTag = `${process.pid}.${startTimeOf('self') ?? randomBytes(6).toString('hex')}`;
const named = new RegExp(`^(${kinds.join('|')})-(\\d+)\\.(\\w+)-`);

/** The path prefix for this process's temp file or folder of `kind`: append a unique rest (or give it to mkdtemp). */
export function processTempPath(kind: TempKind, rest = ''): string {
  return path.join(os.tmpdir(), `${kind}-${ownTag}-${rest}`);
}

/** Whether the process that made a temp file named with (pid, start) has ended. */
function ownerEnded(pid: number, start: string): boolean {
  if (`${pid}.${start}` === ownTag) return false;
  if (!isAlive(pid)) return true;
  // The pid runs again, as another process (reused): with /proc, its start time tells.
  return hasProcfs() && startTimeOf(pid) !== start;
}

/** Removes the temp files and folders of processes that have ended; returns how many. */
export async function removeDeadProcessesTempFiles(log: Logger): Promise<number> {
  const dir = os.tmpdir();
  let removed = 0;
  for (const name of await fs.readdir(dir).catch(() => [])) {
    const match = named.exec(name);
    if (!match || !ownerEnded(Number(match[2]), match[3]!)) continue;
    await fs.rm(path.join(dir, name), { recursive: true, force: true });
    removed++;
  }
  if (removed > 0) log.info({ dir, removed }, 'removed the temp files of processes that ended');
  return removed;
}
