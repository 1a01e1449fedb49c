import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../services/env.ts';
import { waitOnNotify } from './waitOnNotify.ts';

/**
 * The server and the worker as real child processes, run with the very node flags of `npm
 * start` / `npm run worker` (read from package.json), so tests can kill them for real and run
 * what users run. Those scripts are `node … <script>`, with no wrapper process in between: a
 * SIGKILL sent to a wrapper would never reach the server behind it (it would keep running,
 * orphaned). Each runs in a process group of its own (with its embedded Postgres), so a test can
 * kill the whole group as a container runtime or the OOM killer would, and nothing is left running.
 */

export type Script = 'server/main/server.ts' | 'server/main/worker.ts';

/** One parsed JSON log line (pino). */
export interface LogLine {
  level?: number;
  msg?: string;
  pid?: number;
  [key: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ChildUnderTest {
  readonly script: Script;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Every JSON line the process printed on stdout so far. */
  readonly logs: LogLine[];
  stdout(): string;
  stderr(): string;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<Exit>;
  /** `undefined` while it runs. */
  exit(): Exit | undefined;
  /** Waits for a log line matching `test`; fails with the process output if it exits first or time runs out. */
  waitForLog(test: (line: LogLine) => boolean, what: string, timeoutMs?: number): Promise<LogLine>;
  /** Sends `signal` to the node process alone and waits for its exit. */
  kill(signal: NodeJS.Signals, timeoutMs?: number): Promise<Exit>;
  /** Sends `signal` to its whole process group (node and its embedded Postgres) and waits for node's exit. */
  killGroup(signal: NodeJS.Signals, timeoutMs?: number): Promise<Exit>;
  /** The last output of the process, for failure messages. */
  describe(): string;
}

const live = new Set<ChildUnderTest>();
/** Every process group started here, running or not: a dead node may leave its Postgres in it. */
const groups = new Set<number>();

/** Signals process group `pgid`; false when no process of it is left. */
function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

/** The environment a child gets: the test environment's settings, not the test runner's own. */
function childEnv(env: Record<string, string>): Record<string, string> {
  const inherited: Record<string, string> = {};
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ']) {
    const value = process.env[name];
    if (value !== undefined) inherited[name] = value;
  }
  // The helpers read the "listening" / "worker running" lines: at least info, whatever the
  // test environment says (it is quiet by default for in-process servers).
  const verbose = env.LOG_LEVEL === 'debug' || env.LOG_LEVEL === 'trace';
  return {
    ...inherited,
    ...env,
    LOG_LEVEL: verbose ? env.LOG_LEVEL! : 'info',
  };
}

const tail = (text: string, chars = 6000) => (text.length > chars ? `…${text.slice(-chars)}` : text);

/** The arguments after `node` of the npm script that runs `script`, e.g. `server/main/token.ts`. */
export function npmScriptArgs(script: string): string[] {
  const { scripts } = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const command = Object.values(scripts).find((c) => c.startsWith('node ') && c.endsWith(` ${script}`));
  if (!command) throw new Error(`package.json has no script "node … ${script}"`);
  return command.split(/\s+/).slice(1);
}

export function spawnScript(script: Script, env: Record<string, string>): ChildUnderTest {
  const child = spawn(process.execPath, npmScriptArgs(script), {
    cwd: repoRoot,
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  if (child.pid !== undefined) groups.add(child.pid);
  let out = '';
  let err = '';
  let partial = '';
  let exit: Exit | undefined;
  const logs: LogLine[] = [];
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const waiter of waiters) waiter();
  };

  child.stdout!.setEncoding('utf8').on('data', (text: string) => {
    out += text;
    partial += text;
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        // not a log line
      }
    }
    notify();
  });
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    err += text;
  });
  const exited = new Promise<Exit>((resolve) => {
    child.once('error', (error) => {
      err += `\n[spawn failed: ${error.message}]`;
      exit = { code: null, signal: null };
      resolve(exit);
    });
    // 'close', not 'exit': by then stdout and stderr are fully read.
    child.once('close', (code, signal) => {
      exit ??= { code, signal };
      resolve(exit);
    });
  }).finally(() => {
    live.delete(handle);
    notify();
  });

  const handle: ChildUnderTest = {
    script,
    child,
    pid: child.pid ?? -1,
    logs,
    stdout: () => out,
    stderr: () => err,
    exited,
    exit: () => exit,
    describe: () =>
      `${script} (pid ${child.pid}, ${exit ? `exited code=${exit.code} signal=${exit.signal}` : 'running'})\n` +
      `--- stderr ---\n${tail(err) || '(empty)'}\n--- stdout ---\n${tail(out) || '(empty)'}`,
    waitForLog: (test, what, timeoutMs = 60_000) =>
      waitOnNotify(
        waiters,
        () => {
          const found = logs.find(test);
          if (!found && exit) throw new Error(`${script} exited before logging ${what}\n${handle.describe()}`);
          return found;
        },
        () => `${script} did not log ${what} within ${timeoutMs} ms\n${handle.describe()}`,
        timeoutMs,
      ),
    kill: (signal, timeoutMs) => {
      if (!exit) child.kill(signal);
      return waitForExit(signal, timeoutMs);
    },
    killGroup: (signal, timeoutMs) => {
      if (child.pid !== undefined) signalGroup(child.pid, signal);
      return waitForExit(signal, timeoutMs);
    },
  };
  async function waitForExit(signal: NodeJS.Signals, timeoutMs = 30_000): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${script} did not exit within ${timeoutMs} ms of ${signal}\n${handle.describe()}`)), timeoutMs);
    });
    try {
      return await Promise.race([exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
  live.add(handle);
  return handle;
}

export interface ServerProcess extends ChildUnderTest {
  /** The base URL from the "listening" log line. */
  url: string;
}

/** Starts `server/main/server.ts` and waits until it listens (PORT=0 picks a free port; the URL is read from the log). */
export async function startServerProcess(env: Record<string, string>, timeoutMs = 90_000): Promise<ServerProcess> {
  const server = spawnScript('server/main/server.ts', env);
  try {
    const line = await server.waitForLog((l) => l.msg === 'listening', '"listening"', timeoutMs);
    if (typeof line.url !== 'string') throw new Error(`"listening" without a url\n${server.describe()}`);
    return Object.assign(server, { url: line.url });
  } catch (error) {
    await server.kill('SIGKILL').catch(() => undefined);
    throw error;
  }
}

export interface WorkerProcess extends ChildUnderTest {
  /** The runner's lease holder id, from the "worker running" log line. */
  workerId: string;
}

/** Starts `server/main/worker.ts` and waits until its job runner runs. */
export async function startWorkerProcess(env: Record<string, string>, timeoutMs = 90_000): Promise<WorkerProcess> {
  const worker = spawnScript('server/main/worker.ts', env);
  try {
    const line = await worker.waitForLog((l) => l.msg === 'worker running', '"worker running"', timeoutMs);
    if (typeof line.worker !== 'string') throw new Error(`"worker running" without a worker id\n${worker.describe()}`);
    return Object.assign(worker, { workerId: line.worker });
  } catch (error) {
    await worker.kill('SIGKILL').catch(() => undefined);
    throw error;
  }
}

/** Runs a script that is expected to stop by itself (e.g. on bad settings); kills it after `timeoutMs`. */
export async function runUntilExit(script: Script, env: Record<string, string>, timeoutMs = 60_000): Promise<Exit & { stdout: string; stderr: string; describe: string }> {
  const child = spawnScript(script, env);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const result = await Promise.race([child.exited, timeout]);
  clearTimeout(timer);
  if (result === 'timeout') {
    await child.kill('SIGKILL');
    throw new Error(`${script} was still running after ${timeoutMs} ms\n${child.describe()}`);
  }
  return { ...result, stdout: child.stdout(), stderr: child.stderr(), describe: child.describe() };
}

/**
 * SIGKILLs the process group of every process these helpers started, with whatever is left in it
 * (a node killed alone leaves its embedded Postgres there), and waits for the nodes' exits (for
 * afterEach/afterAll).
 */
export async function killAll(): Promise<void> {
  for (const pgid of groups) if (!signalGroup(pgid, 'SIGKILL')) groups.delete(pgid);
  await Promise.all([...live].map((p) => p.kill('SIGKILL', 10_000).catch(() => undefined)));
}
