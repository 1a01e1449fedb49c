// `npm run bench`: upload throughput and peak RSS of the real server (embedded setup: folder
// store + embedded Postgres, no clamd) against a bare Node server that only pipes the body to a file,
// both child processes measured in the same run. Prints figures and ratios; exits non-zero on
// an error, never because a target was missed (it reports those).
//
// Settings (environment):
//   BENCH_REPEAT=3       rounds; each workload runs once per round on each server (the order
//                        alternates); the table shows the median and the range
//   BENCH_SCALE=1        divide every size by this (e.g. 8 for a quick smoke run)
//   BENCH_SERVER_NODE_ARGS  node flags for the real server besides those of `npm start`
//   BENCH_TRACE_GC=1     run both servers with --trace-gc and count their full GCs (0: off)
//   BENCH_LOG_LEVEL=warn LOG_LEVEL of the real server
//   BENCH_RUN_JOBS=true  RUN_JOBS of the real server (the inspect job runs after each upload,
//                        outside the timed window: the bench waits for it between runs)
//   BENCH_CPU_PROF=1     start both servers with --cpu-prof; profiles are kept in a temp dir
//   BENCH_VERBOSE=1      echo the children's output
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { reachableTempDir } from '../support/reachableTempDir.ts';
import { plainUpload, settleAndDelete, tusUpload, type Slice } from './clients.ts';
import { baseEnv, benchServerNodeArgs, fmt, fmtMiB, GiB, median, MiB, positiveInt, serverEnv, settleDisk, writeSource } from './common.ts';
import { runBench, sleep, startChild, watchProcess, type ChildServer, type Window } from './processes.ts';

const TARGET_RATIO = 0.9;
/** Peak RSS may differ by this much between the 256 MiB and the 1 GiB upload and be "flat". */
const FLAT_RSS_SLACK = 32 * MiB;

const repeat = positiveInt('BENCH_REPEAT', 3);
const scale = positiveInt('BENCH_SCALE', 1);
const traceGc = process.env.BENCH_TRACE_GC !== '0';
const serverNodeArgs = await benchServerNodeArgs();

interface Workload {
  key: string;
  label: string;
  count: number;
  size: number;
}
const workloads: Workload[] = [
  { key: '1x1GiB', label: '1 × 1 GiB', count: 1, size: GiB / scale },
  { key: '16x64MiB', label: '16 × 64 MiB', count: 16, size: (64 * MiB) / scale },
  { key: '1x256MiB', label: '1 × 256 MiB', count: 1, size: (256 * MiB) / scale },
];

type Side = 'bare' | 'server';
interface Run {
  workload: Workload;
  side: Side;
  seconds: number;
  mbps: number;
  window: Window;
  clientCpuSeconds: number;
  markCompacts: number;
  /** Server only: while its inspect jobs read the uploads back, and the deletes. */
  after?: Window;
}

async function main(): Promise<void> {
  const started = performance.now();
  const sourceSize = Math.max(...workloads.map((w) => w.count * w.size));
  console.log(`tus upload bench — node ${process.version}, ${os.availableParallelism()} CPUs, load average ${os.loadavg()[0]!.toFixed(1)}, ${repeat} round(s)`);
  const source = path.join(tempRoot, 'source.bin');
  await writeSource(source, sourceSize);

  const bareDir = path.join(tempRoot, 'bare');
  const serverDir = path.join(tempRoot, 'server');
  const nodeArgs = (name: string) => [
    ...(traceGc ? ['--trace-gc'] : []),
    ...(profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-name', `${name}.cpuprofile`] : []),
  ];
  const bare = await startChild('bare', 'test/bench/bareServer.ts', { ...baseEnv(), BARE_DIR: bareDir }, nodeArgs('bare'));
  children.push(bare);
  const server = await startChild('server', 'server/main/server.ts', serverEnv(serverDir), [...serverNodeArgs, ...nodeArgs('server')]);
  children.push(server);
  console.log(`bare server   pid ${bare.pid} ${bare.url} (test/bench/bareServer.ts: request piped to fs.createWriteStream)`);
  console.log(
    `real server   pid ${server.pid} ${server.url} (node ${serverNodeArgs.join(' ')} server/main/server.ts: folder store + embedded Postgres, SCAN=off, RUN_JOBS=${serverEnv('').RUN_JOBS})`,
  );
  const idle = { bare: rssOf(bare.pid), server: rssOf(server.pid) };

  // Warm-up (not measured): JIT, first queries, connections.
  const warm: Workload = { key: 'warm', label: 'warm-up', count: 2, size: 16 * MiB };
  await runOnce('bare', warm, bare, bareDir, source);
  await runOnce('server', warm, server, serverDir, source);
  const warmIdle = { bare: rssOf(bare.pid), server: rssOf(server.pid) };
  console.log(`idle RSS      server ${fmtMiB(idle.server)} after start, ${fmtMiB(warmIdle.server)} after warm-up; bare ${fmtMiB(warmIdle.bare)}`);

  const runs: Run[] = [];
  for (let round = 1; round <= repeat; round++) {
    console.log(`\nround ${round}/${repeat}`);
    for (const workload of workloads) {
      const order: Side[] = round % 2 === 1 ? ['bare', 'server'] : ['server', 'bare'];
      for (const side of order) {
        const run = await runOnce(side, workload, side === 'bare' ? bare : server, side === 'bare' ? bareDir : serverDir, source);
        runs.push(run);
        console.log(
          `  ${workload.label.padEnd(12)} ${side.padEnd(6)} ${fmt(run.mbps, 0).padStart(5)} MB/s  ${fmt(run.seconds, 2).padStart(6)} s  ` +
            `peak RSS ${fmtMiB(run.window.peakRssBytes).padStart(8)}  CPU ${fmt(run.window.cpuSeconds, 2)} s (client ${fmt(run.clientCpuSeconds, 2)} s)` +
            (traceGc ? `  full GCs ${run.markCompacts}` : '') +
            (run.after ? `  | inspect+delete peak RSS ${fmtMiB(run.after.peakRssBytes)}` : ''),
        );
      }
    }
  }
  report(runs, warmIdle);
  console.log(`\ntotal ${fmt((performance.now() - started) / 1000, 0)} s`);
}

/** One workload against one server: `count` uploads at once, timed from the first request to the last answer. */
async function runOnce(side: Side, workload: Workload, child: ChildServer, dataDir: string, source: string): Promise<Run> {
  await settleDisk();
  const slices: Slice[] = Array.from({ length: workload.count }, (_, i) => ({ file: source, start: i * workload.size, length: workload.size }));
  const gc0 = child.gcCount().markCompacts;
  const watch = watchProcess(child.pid);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const urls = await Promise.all(
    slices.map((slice, i) => (side === 'bare' ? plainUpload(child.url, slice) : tusUpload(child.url, slice, `bench-${i}.bin`))),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const window = watch.stop();
  // --trace-gc lines reach us through a pipe: give the last ones a moment.
  if (traceGc) await sleep(100);
  const markCompacts = child.gcCount().markCompacts - gc0;
  let after: Window | undefined;
  if (side === 'server') {
    const watchAfter = watchProcess(child.pid);
    await Promise.all(urls.map((url) => settleAndDelete(child.url, url.split('/').pop()!)));
    after = watchAfter.stop();
  } else {
    for (const name of await fs.readdir(dataDir)) await fs.rm(path.join(dataDir, name), { force: true });
  }
  const bytes = workload.count * workload.size;
  return { workload, side, seconds, mbps: bytes / 1e6 / seconds, window, clientCpuSeconds: (cpu.user + cpu.system) / 1e6, markCompacts, after };
}

function report(runs: Run[], idle: { bare: number; server: number }): void {
  const rows = workloads.map((workload) => {
    const of = (side: Side) => runs.filter((r) => r.workload === workload && r.side === side);
    const bare = of('bare');
    const server = of('server');
    const gib = (workload.count * workload.size) / GiB;
    const cpuPerGiB = (rs: Run[]) => median(rs.map((r) => r.window.cpuSeconds)) / gib;
    const gcPerGiB = (rs: Run[]) => median(rs.map((r) => r.markCompacts)) / gib;
    return {
      workload,
      bare,
      server,
      bareMbps: median(bare.map((r) => r.mbps)),
      serverMbps: median(server.map((r) => r.mbps)),
      bestRatio: Math.max(...server.map((r) => r.mbps)) / Math.max(...bare.map((r) => r.mbps)),
      bareCpu: cpuPerGiB(bare),
      serverCpu: cpuPerGiB(server),
      bareGc: gcPerGiB(bare),
      serverGc: gcPerGiB(server),
      tusClientCpu: median(server.map((r) => r.clientCpuSeconds)) / gib,
      plainClientCpu: median(bare.map((r) => r.clientCpuSeconds)) / gib,
      bareRss: median(bare.map((r) => r.window.peakRssBytes)),
      serverRss: median(server.map((r) => r.window.peakRssBytes)),
      // How far RSS rose above where it stood when the upload began (startup leftovers that a
      // GC frees mid-run make the peak alone noisy).
      serverGrowth: Math.max(...server.map((r) => r.window.peakRssBytes - r.window.startRssBytes)),
      afterRss: Math.max(...server.map((r) => r.after?.peakRssBytes ?? 0)),
    };
  });
  const range = (rs: Run[]) => `${fmt(Math.min(...rs.map((r) => r.mbps)), 0)}–${fmt(Math.max(...rs.map((r) => r.mbps)), 0)}`;

  console.log(`\n## Results: median of ${repeat} round${repeat === 1 ? '' : 's'} (range); MB/s = 10^6 bytes/s; RSS: median peak of the process, and in brackets the most it rose during one upload\n`);
  console.log(
    `| workload | bare MB/s | server MB/s | server/bare (best/best) | server peak RSS | bare peak RSS | CPU s/GiB server · bare |${traceGc ? ' full GCs/GiB server · bare |' : ''}`,
  );
  console.log(`|---|---:|---:|---:|---:|---:|---:|${traceGc ? '---:|' : ''}`);
  for (const r of rows) {
    console.log(
      `| ${r.workload.label} | ${fmt(r.bareMbps, 0)} (${range(r.bare)}) | ${fmt(r.serverMbps, 0)} (${range(r.server)}) | ` +
        `${fmt(r.serverMbps / r.bareMbps, 2)}× (${fmt(r.bestRatio, 2)}×) | ${fmtMiB(r.serverRss)} (+${fmtMiB(r.serverGrowth)}) | ${fmtMiB(r.bareRss)} | ` +
        `${fmt(r.serverCpu, 2)} · ${fmt(r.bareCpu, 2)} |${traceGc ? ` ${fmt(r.serverGc, 0)} · ${fmt(r.bareGc, 0)} |` : ''}`,
    );
  }
  console.log(`\nidle RSS after warm-up: server ${fmtMiB(idle.server)}, bare ${fmtMiB(idle.bare)}`);
  console.log(`server peak RSS while its inspect jobs read the uploads back: ${rows.map((r) => `${r.workload.label} ${fmtMiB(r.afterRss)}`).join(', ')}`);
  console.log(
    `client CPU s/GiB (bench process): tus-js-client ${rows.map((r) => fmt(r.tusClientCpu, 2)).join(' / ')}, node:http ${rows.map((r) => fmt(r.plainClientCpu, 2)).join(' / ')}`,
  );
  console.log('CPU = user + system time of the server process (all threads) during the timed window.');

  console.log('\n## Targets');
  for (const r of rows) {
    const ratio = r.serverMbps / r.bareMbps;
    console.log(`  ${ratio >= TARGET_RATIO ? 'met   ' : 'MISSED'}  ${r.workload.label}: server/bare ${fmt(ratio, 2)}× (target ≥ ${TARGET_RATIO}×)`);
  }
  const big = rows.find((r) => r.workload.key === '1x1GiB')!;
  const small = rows.find((r) => r.workload.key === '1x256MiB')!;
  const growth = big.serverRss - small.serverRss;
  const flat = growth <= FLAT_RSS_SLACK && big.serverGrowth <= FLAT_RSS_SLACK;
  console.log(
    `  ${flat ? 'met   ' : 'MISSED'}  flat RSS: server peak ${fmtMiB(small.serverRss)} for 256 MiB, ${fmtMiB(big.serverRss)} for 1 GiB ` +
      `(${growth >= 0 ? '+' : ''}${fmtMiB(growth)}); rose at most ${fmtMiB(big.serverGrowth)} during a 1 GiB upload (target: both ≤ ${fmtMiB(FLAT_RSS_SLACK)})`,
  );
}

function rssOf(pid: number): number {
  return watchProcess(pid).stop().startRssBytes;
}

async function cleanup(): Promise<void> {
  await Promise.all(children.splice(0).map((c) => c.stop().catch(() => undefined)));
  await fs.rm(tempRoot, { recursive: true, force: true });
  if (profileDir) console.log(`\nCPU profiles (open in Chrome DevTools or speedscope): ${profileDir}`);
}

const tempRoot = await reachableTempDir('tus-bench-');
const profileDir = process.env.BENCH_CPU_PROF ? await fs.mkdtemp(path.join(os.tmpdir(), 'tus-bench-profiles-')) : undefined;
const children: ChildServer[] = [];
await runBench(main, children, cleanup);
