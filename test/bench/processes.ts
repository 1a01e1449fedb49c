// Child processes for the bench (the real server, the bare baseline, the peers) and what the bench
// reads about them from /proc: the port they listen on, their RSS and their CPU time.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface ChildServer {
  name: string;
  /** The pid of the node process that listens (no wrapper process in between). */
  pid: number;
  url: string;
  /** The last lines the child wrote (stdout and stderr), for error messages. */
  output(): string;
  /** GCs the child reported so far (only counted when it runs with --trace-gc). */
  gcCount(): { markCompacts: number; scavenges: number };
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the child is gone. */
  stop(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  timeoutMs?: number;
  cwd?: string;
  onSpawn?: (pid: number) => void;
}

/**
 * Starts `node [nodeArgs] <script>` in the repository root. The node process itself runs the
 * script, so its pid is the one to measure.
 */
export function startChild(name: string, script: string, env: Record<string, string>, nodeArgs: string[] = [], options: StartOptions = {}): Promise<ChildServer> {
  return startProcess(name, process.execPath, [...nodeArgs, script], env, options);
}

/**
 * Starts the server of `checkout` (this repository or another one, e.g. the commit before a
 * change) with its `npm start` command line, on this process's node (both sides of a comparison
 * run on the same runtime), plus BENCH_SERVER_NODE_ARGS and `nodeArgs`.
 */
export async function startServerOf(checkout: string, name: string, env: Record<string, string>, nodeArgs: string[] = [], options: StartOptions = {}): Promise<ChildServer> {
  const start = await startCommand(checkout);
  const extra = process.env.BENCH_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  return startProcess(name, process.execPath, [...start.nodeArgs, ...extra, ...nodeArgs, start.script], env, { ...options, cwd: checkout });
}

/** The node flags (loaders included) and entry script of `npm start` in `checkout`'s package.json. */
export async function startCommand(checkout: string): Promise<{ script: string; nodeArgs: string[] }> {
  const pkg = JSON.parse(await fs.readFile(path.join(checkout, 'package.json'), 'utf8')) as { scripts: { start: string } };
  const args = pkg.scripts.start.split(/\s+/);
  const script = args.at(-1)!;
  if (args[0] !== 'node' || !/\.[cm]?[jt]s$/.test(script)) throw new Error(`${checkout}: npm start is not "node … <script>": ${pkg.scripts.start}`);
  return { script, nodeArgs: args.slice(1, -1) };
}

/** The `--import` preloads of `checkout`'s `npm start` (a loader, for a checkout that needs one): what its TypeScript runs with. */
export async function preloadArgs(checkout: string): Promise<string[]> {
  const { nodeArgs } = await startCommand(checkout);
  return nodeArgs.flatMap((arg, i) => (arg === '--import' ? [arg, nodeArgs[i + 1]!] : []));
}

/**
 * Starts `command args` (a server) and waits until it answers HTTP. The URL comes from a JSON
 * `listening` log line when there is one (LOG_LEVEL=info or the bare server); otherwise (the
 * server at LOG_LEVEL=warn, uvicorn) the port is read from /proc.
 */
export async function startProcess(
  name: string,
  command: string,
  args: string[],
  env: Record<string, string>,
  { timeoutMs = 60_000, cwd = repoRoot, onSpawn }: StartOptions = {},
): Promise<ChildServer> {
  const child = spawn(command, args, {
    cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let announced: string | undefined;
  const gcs = { markCompacts: 0, scavenges: 0 };
  const keep = (line: string) => {
    // --trace-gc lines: "[pid:0x…]  1234 ms: Mark-Compact 20.9 (56.0) -> …" or "…: Scavenge …"
    if (line.startsWith('[') && line.includes(' ms: ')) {
      if (line.includes(': Mark-Compact')) gcs.markCompacts++;
      else if (line.includes(': Scavenge')) gcs.scavenges++;
      return;
    }
    lines.push(line);
    if (lines.length > 50) lines.shift();
    if (!announced && line.startsWith('{')) {
      try {
        const entry = JSON.parse(line) as { msg?: string; url?: string };
        if (entry.msg === 'listening' && entry.url) announced = entry.url;
      } catch {
        // not JSON after all
      }
    }
    if (process.env.BENCH_VERBOSE) console.error(`  [${name}] ${line}`);
  };
  createInterface({ input: child.stdout! }).on('line', keep);
  createInterface({ input: child.stderr! }).on('line', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let gone = false;
  void exited.then(() => {
    gone = true;
  });

  const pid = child.pid;
  if (pid === undefined) throw new Error(`${name}: could not start ${command}`);
  onSpawn?.(pid);
  const deadline = Date.now() + timeoutMs;
  let url: string | undefined;
  while (!url) {
    if (gone) throw new Error(`${name} exited before listening:\n${lines.join('\n')}`);
    if (Date.now() > deadline) {
      await stopChild(child, exited, 1000);
      throw new Error(`${name} did not listen within ${timeoutMs} ms:\n${lines.join('\n')}`);
    }
    const port = announced ? undefined : await listeningPort(pid);
    const candidate = announced ?? (port ? `http://127.0.0.1:${port}` : undefined);
    if (candidate && (await answers(candidate))) url = candidate;
    else await sleep(50);
  }
  return {
    name,
    pid,
    url,
    output: () => lines.join('\n'),
    gcCount: () => ({ ...gcs }),
    stop: (graceMs = 10_000) => stopChild(child, exited, graceMs),
  };
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return true; // any HTTP answer (the bare server says 404) means it accepts requests
  } catch {
    return false;
  }
}

/** The TCP port a process listens on, from its socket fds and /proc/<pid>/net/tcp{,6}. */
export async function listeningPort(pid: number): Promise<number | undefined> {
  const inodes = new Set<string>();
  const fds = await fs.readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
  for (const fd of fds) {
    const link = await fs.readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const match = /^socket:\[(\d+)\]$/.exec(link);
    if (match) inodes.add(match[1]!);
  }
  for (const table of ['tcp', 'tcp6']) {
    const text = await fs.readFile(`/proc/${pid}/net/${table}`, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      // sl local_address rem_address st ... inode; st 0A is LISTEN
      if (cols[3] === '0A' && inodes.has(cols[9] ?? '')) return Number.parseInt(cols[1]!.split(':')[1]!, 16);
    }
  }
  return undefined;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** RSS and CPU time of one process over a window of time. */
export interface Window {
  /** Largest RSS seen: max of the kernel's VmHWM (reset at the start) and 100 ms samples. */
  peakRssBytes: number;
  /** RSS when the window opened. */
  startRssBytes: number;
  /** user + system CPU the process used during the window. */
  cpuSeconds: number;
}

const clockTicks = 100; // USER_HZ: 100 on every Linux this runs on

function readStatus(pid: number): { rss: number; hwm: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

function readCpuSeconds(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after "(comm)": state is field 3, utime 14 and stime 15 (1-based).
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / clockTicks;
}

/** Samples a process every `intervalMs` until `stop()`; resets VmHWM first when allowed. */
export function watchProcess(pid: number, intervalMs = 100): { stop(): Window } {
  let hwmReset = false;
  try {
    // "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0, own processes).
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    hwmReset = true;
  } catch {
    // not allowed here: rely on the samples alone
  }
  const start = readStatus(pid);
  const startCpu = readCpuSeconds(pid);
  let peak = start.rss;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, readStatus(pid).rss);
    } catch {
      // the process is gone; stop() reports what was seen
    }
  }, intervalMs);
  return {
    stop: () => {
      clearInterval(timer);
      const end = readStatus(pid);
      return {
        peakRssBytes: Math.max(peak, end.rss, hwmReset ? end.hwm : 0),
        startRssBytes: start.rss,
        cpuSeconds: readCpuSeconds(pid) - startCpu,
      };
    },
  };
}

/**
 * Runs a bench script: on an error prints it with the children's last output and sets a non-zero
 * exit code; `cleanup` runs on the way out, on SIGINT and SIGTERM too.
 */
export async function runBench(main: () => Promise<void>, children: ChildServer[], cleanup: () => Promise<void>): Promise<void> {
  let interrupted = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      interrupted = true;
      console.error(`\n${signal}: cleaning up`);
      void cleanup().then(() => process.exit(130));
    });
  }
  try {
    await main();
  } catch (error) {
    console.error('\nbench failed:', error);
    for (const child of children) console.error(`--- last output of ${child.name} ---\n${child.output()}`);
    process.exitCode = 1;
  } finally {
    if (!interrupted) await cleanup();
  }
}
