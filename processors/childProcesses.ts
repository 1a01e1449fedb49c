import { spawn, type ChildProcess } from 'node:child_process';
import type { MessagePort } from 'node:worker_threads';

/**
 * The children of one media job (run on a worker thread): ffmpeg and ffprobe for a video,
 * heif-convert for an HEIC image.
 *
 * Children are never left running (see `Children` and `guard` below):
 *   - timeout / error: SIGKILL, then wait for the exit (Node reaps it: no zombie);
 *   - the worker thread is terminated (piscina aborting a cancelled job) or the whole process
 *     dies: each child has a tiny `/bin/sh` guardian reading a pipe from this thread. Node
 *     closes a terminated thread's pipes (the kernel closes them when the process dies), the
 *     guardian reads EOF and SIGKILLs its child. Needed because Node runs no JavaScript in a
 *     thread being terminated: `process.on('exit')` does not fire there (checked on Node 20 and 24),
 *     and a child of a thread is a child of the process, which lives on. The killed child then
 *     stays a zombie (no CPU, no memory, one pid) until the process exits: its reaper, that
 *     thread's event loop, is gone, and Node only waits for pids it still has handles for.
 */

/**
 * The children of one job. `closeAndKill` (timeout, end of job) SIGKILLs whatever still runs
 * and waits until Node has reaped it; a child adopted after that is killed at once.
 */
export class Children {
  private readonly running = new Map<ChildProcess, Promise<void>>();
  closed = false;

  adopt(child: ChildProcess): void {
    if (child.pid === undefined) return; // not spawned: its 'error' event reports why
    const release = guard(child.pid);
    const exited = new Promise<void>((resolve) => {
      const done = () => {
        release();
        this.running.delete(child);
        resolve();
      };
      if (child.exitCode !== null || child.signalCode !== null) done();
      else child.once('exit', done);
    });
    this.running.set(child, exited);
    if (this.closed) child.kill('SIGKILL');
  }

  async closeAndKill(): Promise<void> {
    this.closed = true;
    for (const child of this.running.keys()) child.kill('SIGKILL');
    await Promise.all(this.running.values());
  }
}

/**
 * A watchdog for one child: `sh` blocks reading a pipe from this thread. Released normally, it
 * reads a line and exits; if the pipe closes first (this thread terminated, or the process
 * died), `read` fails and it SIGKILLs the child. The pipe is close-on-exec (libuv), so no other
 * child holds it open. Without /bin/sh the job still runs, just without this safety net.
 */
const GUARD_SCRIPT = 'read -r _ || kill -9 "$1" 2>/dev/null';

function guard(pid: number): () => void {
  let guardian: ChildProcess;
  try {
    guardian = spawn('/bin/sh', ['-c', GUARD_SCRIPT, 'videojob-guard', String(pid)], { stdio: ['pipe', 'ignore', 'ignore'] });
  } catch {
    return () => undefined;
  }
  guardian.on('error', () => undefined);
  guardian.stdin?.on('error', () => undefined);
  return () => {
    guardian.stdin?.end('\n');
  };
}

/** Errors in a child's stderr that say "the machine is in trouble", not "the input is bad": thrown, so retried. */
export const SYSTEM_TROUBLE =
  /No space left on device|Cannot allocate memory|Too many open files|Read-only file system|Input\/output error|Permission denied|No such file or directory|Resource temporarily unavailable|Disk quota exceeded/i;

/** Thrown by `JobControl.check` once the job is out of time or cancelled. */
export class Stopped extends Error {}

/**
 * A job's children with its time budget and its cancel message: out of time (`timeoutMs`), or
 * `{ cancel: true }` on `port` from the job runner, and the children are killed and reaped here,
 * on this thread, which lives on (a terminated thread would leave them as zombies). The job calls
 * `check` after each step and `release` when it ends.
 */
export class JobControl {
  readonly children = new Children();
  readonly started = Date.now();
  stopped: 'timeout' | 'cancelled' | undefined;
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly onMessage = (message: { cancel?: boolean }) => {
    if (message.cancel) this.stop('cancelled');
  };

  readonly timeoutMs: number;
  private readonly port: MessagePort | undefined;

  constructor(
    timeoutMs: number,
    port: MessagePort | undefined,
  ) {
    this.timeoutMs = timeoutMs;
    this.port = port;
    this.timer =
      Number.isFinite(timeoutMs) && timeoutMs > 0 ? setTimeout(() => this.stop('timeout'), Math.min(timeoutMs, 2 ** 31 - 1)) : undefined;
    port?.on('message', this.onMessage);
  }

  check(): void {
    if (this.stopped) throw new Stopped();
  }

  /** The outcome's reason for a stopped job. */
  reason(): string {
    if (this.stopped === 'cancelled') return 'cancelled';
    return `timed out after ${formatSeconds(Date.now() - this.started)} (limit ${formatSeconds(this.timeoutMs)})`;
  }

  async release(): Promise<void> {
    clearTimeout(this.timer);
    this.port?.off('message', this.onMessage);
    await this.children.closeAndKill();
  }

  private stop(why: 'timeout' | 'cancelled'): void {
    this.stopped ??= why;
    void this.children.closeAndKill();
  }
}

function formatSeconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}
