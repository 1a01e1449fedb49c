import { readFileSync } from 'node:fs';

/**
 * What the process table says about another process: whether it still runs, and which start of a
 * pid it is. Linux answers from /proc; elsewhere only `kill(pid, 0)` is asked.
 */

/** A process that has not exited; a zombie (exited, not yet reaped by a lazy init) is not alive. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return statFields(pid)?.[0] !== 'Z';
}

/** Fields 3… of /proc/<pid>/stat (state first); undefined without /proc or once gone. */
function statFields(pid: number | 'self'): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name in parentheses may itself hold spaces and parentheses.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Whether /proc answers for processes here. */
export const hasProcfs = () => statFields('self') !== undefined;

/**
 * When `pid` started (clock ticks since boot, field 22 of /proc/<pid>/stat): with the pid, it names
 * one run of a process, as a pid alone is reused. Undefined without /proc or once gone.
 */
export function startTimeOf(pid: number | 'self'): string | undefined {
  return statFields(pid)?.[19];
}
