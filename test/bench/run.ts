// `npm run bench`: upload throughput and peak RSS of the real server (embedded setup: folder
// store + embedded Postgres, no clamd) against its baselines, all child processes measured in
// the same run: a bare Node server that only pipes the body to a file (bareServer.ts) and, for
// the plain PATCH, the seed's FastAPI streaming endpoint (seedFastapi.py) sent the same body as
// one POST. With BENCH_BASELINE_DIR the server of another checkout runs as one more side,
// "before". Prints figures and ratios; exits non-zero on an error, never because a target was
// missed (it reports those).
//
// Settings (environment):
//   BENCH_REPEAT=5       rounds; each workload runs once per round on each side (the order
//                        alternates); the table shows the median and the range
//   BENCH_SCALE=1        divide every size by this (e.g. 8 for a quick smoke run)
//   BENCH_ONLY           run only the workloads whose label starts with this (e.g. "1 PATCH")
//   BENCH_BASELINE_DIR   another checkout (with node_modules), e.g. the commit before a change,
//                        run as the side "before" with the same settings on the same node
//   BENCH_SERVER_NODE_ARGS  node flags for the real server besides those of `npm start`
//   BENCH_TRACE_GC=1     run the node servers with --trace-gc and count their full GCs (0: off)
//   BENCH_LOG_LEVEL=warn LOG_LEVEL of the real server
//   BENCH_RUN_JOBS=true  RUN_JOBS of the real server (the inspect job runs after each upload,
//                        outside the timed window: the bench waits for it between runs)
//   BENCH_CPU_PROF=1     start the node servers with --cpu-prof; profiles are kept in a temp dir
//   BENCH_VERBOSE=1      echo the children's output
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { reachableTempDir } from '../support/reachableTempDir.ts';
import { createUpload, patchUpload, plainUpload, postWhole, settleAndDelete, tusUpload, type Slice } from './clients.ts';
import { baseEnv, fmt, fmtMiB, GiB, median, MiB, positiveInt, reportCompared, serverEnv, settleDisk, writeSource } from './common.ts';
import { repoRoot, runBench, sleep, startChild, startServerOf, watchProcess, type ChildServer, type Window } from './processes.ts';
import { startSeedPeer } from './seedPeer.ts';

/** Peak RSS may differ by this much between the 256 MiB and the 1 GiB upload and be "flat". */
const FLAT_RSS_SLACK = 32 * MiB;

const repeat = positiveInt('BENCH_REPEAT', 5);
const scale = positiveInt('BENCH_SCALE', 1);
const traceGc = process.env.BENCH_TRACE_GC !== '0';
const baselineDir = process.env.BENCH_BASELINE_DIR ? path.resolve(process.env.BENCH_BASELINE_DIR) : undefined;

type Side = 'seed' | 'bare' | 'server' | 'before';
interface Workload {
  key: string;
  label: string;
  count: number;
  size: number;
  /** `plain`: one untimed POST, then one timed PATCH with node:http (the seed gets one POST with the body); `tus`: tus-js-client, timed whole. */
  client: 'plain' | 'tus';
  /** What the server is measured against, with the least ratio each must reach. */
  targets: Partial<Record<Side, number>>;
}
const workloads: Workload[] = [
  { key: 'patch', label: '1 PATCH × 400 MiB', count: 1, size: (400 * MiB) / scale, client: 'plain' as const, targets: { seed: 1, bare: 1 } },
  { key: '1x1GiB', label: '1 × 1 GiB', count: 1, size: GiB / scale, client: 'tus' as const, targets: { bare: 0.9 } },
  { key: '16x64MiB', label: '16 × 64 MiB', count: 16, size: (64 * MiB) / scale, client: 'tus' as const, targets: { bare: 0.9 } },
  { key: '1x256MiB', label: '1 × 256 MiB', count: 1, size: (256 * MiB) / scale, client: 'tus' as const, targets: { bare: 0.9 } },
].filter((w) => !process.env.BENCH_ONLY || w.label.startsWith(process.env.BENCH_ONLY));

const sidesOf = (workload: Workload): Side[] => [...(Object.keys(workload.targets) as Side[]), 'server', ...(baselineDir ? (['before'] as const) : [])];

interface Run {
  workload: Workload;
  side: Side;
  seconds: number;
  mbps: number;
  window: Window;
  clientCpuSeconds: number;
  markCompacts: number;
  /** Servers only: while their inspect jobs read the uploads back, and the deletes. */
  after?: Window;
}

/** A side's process and the folder it writes into. */
interface Peer {
  child: ChildServer;
  dir: string;
}

async function main(): Promise<void> {
  const started = performance.now();
  const sourceSize = Math.max(...workloads.map((w) => w.count * w.size));
  console.log(`tus upload bench — node ${process.version}, ${os.availableParallelism()} CPUs, load average ${loadAverage()}, ${repeat} round(s)`);
  const source = path.join(tempRoot, 'source.bin');
  await writeSource(source, sourceSize);

  const nodeArgs = (name: string) => [
    ...(traceGc ? ['--trace-gc'] : []),
    ...(profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-name', `${name}.cpuprofile`] : []),
  ];
  const dirOf = (side: Side) => path.join(tempRoot, side);
  const start: Record<Side, () => Promise<ChildServer>> = {
    seed: () => startSeedPeer(dirOf('seed')),
    bare: () => startChild('bare', 'test/bench/bareServer.ts', { ...baseEnv(), BARE_DIR: dirOf('bare') }, nodeArgs('bare')),
    server: () => startServerOf(repoRoot, 'server', serverEnv(dirOf('server')), nodeArgs('server')),
    before: () => startServerOf(baselineDir!, 'before', serverEnv(dirOf('before')), nodeArgs('before')),
  };
  const used = [...new Set(workloads.flatMap(sidesOf))];
  const peers = {} as Record<Side, Peer>;
  for (const side of used) {
    const child = await start[side]();
    children.push(child);
    peers[side] = { child, dir: dirOf(side) };
  }
  console.log(`seed     the seed's FastAPI endpoint (test/bench/seedFastapi.py: uvicorn, one uvloop worker)`);
  console.log(`bare     test/bench/bareServer.ts: request piped to fs.createWriteStream`);
  console.log(`server   ${repoRoot} as npm start runs it: folder store + embedded Postgres, SCAN=off, RUN_JOBS=${serverEnv('').RUN_JOBS}`);
  if (baselineDir) console.log(`before   ${baselineDir}, the same settings, on the same node`);
  for (const side of used) console.log(`  ${side.padEnd(7)} pid ${peers[side].child.pid} ${peers[side].child.url}`);

  // Warm-up (not measured): JIT, first queries, connections.
  for (const workload of workloads.filter((w, i, all) => all.findIndex((o) => o.client === w.client) === i)) {
    const warm: Workload = { ...workload, key: 'warm', label: 'warm-up', count: 2, size: 16 * MiB };
    for (const side of sidesOf(workload)) await runOnce(side, warm, peers[side], source);
  }
  const idle = Object.fromEntries(used.map((side) => [side, rssOf(peers[side].child.pid)]));
  console.log(`idle RSS after warm-up: ${used.map((side) => `${side} ${fmtMiB(idle[side]!)}`).join(', ')}`);

  const runs: Run[] = [];
  for (let round = 1; round <= repeat; round++) {
    console.log(`\nround ${round}/${repeat}, load average ${loadAverage()}`);
    for (const workload of workloads) {
      const order = round % 2 === 1 ? sidesOf(workload) : sidesOf(workload).reverse();
      for (const side of order) {
        const run = await runOnce(side, workload, peers[side], source);
        runs.push(run);
        console.log(
          `  ${workload.label.padEnd(17)} ${side.padEnd(6)} ${fmt(run.mbps, 0).padStart(5)} MB/s  ${fmt(run.seconds, 2).padStart(6)} s  ` +
            `peak RSS ${fmtMiB(run.window.peakRssBytes).padStart(8)}  CPU ${fmt(run.window.cpuSeconds, 2)} s (client ${fmt(run.clientCpuSeconds, 2)} s)` +
            (traceGc && side !== 'seed' ? `  full GCs ${run.markCompacts}` : '') +
            (run.after ? `  | inspect+delete peak RSS ${fmtMiB(run.after.peakRssBytes)}` : ''),
        );
      }
    }
  }
  report(runs);
  await reportCompared(
    workloads.map((workload) => {
      const mbps = (side: Side) => runs.filter((r) => r.workload === workload && r.side === side).map((r) => r.mbps);
      return { figure: `upload throughput, ${workload.label}`, unit: 'MB/s', better: 'higher', before: mbps('before'), after: mbps('server') };
    }),
  );
  console.log(`\ntotal ${fmt((performance.now() - started) / 1000, 0)} s, load average ${loadAverage()}`);
}

/** One workload on one side: `count` uploads at once, timed from the first body request to the last answer. */
async function runOnce(side: Side, workload: Workload, peer: Peer, source: string): Promise<Run> {
  await settleDisk();
  const { child } = peer;
  const isServer = side === 'server' || side === 'before';
  const slices: Slice[] = Array.from({ length: workload.count }, (_, i) => ({ file: source, start: i * workload.size, length: workload.size }));
  const name = (i: number) => `bench-${i}.bin`;
  const created =
    workload.client === 'plain' && side !== 'seed' ? await Promise.all(slices.map((s, i) => createUpload(child.url, s.length, isServer ? name(i) : undefined))) : [];
  const gc0 = child.gcCount().markCompacts;
  const watch = watchProcess(child.pid);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const urls = await Promise.all(
    slices.map(async (slice, i) => {
      if (workload.client === 'plain') {
        if (side === 'seed') return postWhole(`${child.url}/upload/stream/`, slice, name(i)).then(() => '');
        return patchUpload(created[i]!, slice).then(() => created[i]!);
      }
      return isServer ? tusUpload(child.url, slice, name(i)) : plainUpload(child.url, slice);
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const window = watch.stop();
  // --trace-gc lines reach us through a pipe: give the last ones a moment.
  if (traceGc) await sleep(100);
  const markCompacts = child.gcCount().markCompacts - gc0;
  let after: Window | undefined;
  if (isServer) {
    const watchAfter = watchProcess(child.pid);
    await Promise.all(urls.map((url) => settleAndDelete(child.url, url.split('/').pop()!)));
    after = watchAfter.stop();
  } else {
    const dir = side === 'seed' ? path.join(peer.dir, 'uploads') : peer.dir;
    for (const file of await fs.readdir(dir)) await fs.rm(path.join(dir, file), { force: true });
  }
  const bytes = workload.count * workload.size;
  return { workload, side, seconds, mbps: bytes / 1e6 / seconds, window, clientCpuSeconds: (cpu.user + cpu.system) / 1e6, markCompacts, after };
}

function report(runs: Run[]): void {
  const of = (workload: Workload, side: Side) => runs.filter((r) => r.workload === workload && r.side === side);
  const mbps = (rs: Run[]) => median(rs.map((r) => r.mbps));
  const range = (rs: Run[]) => `${fmt(Math.min(...rs.map((r) => r.mbps)), 0)}–${fmt(Math.max(...rs.map((r) => r.mbps)), 0)}`;

  console.log(`\n## Results: median of ${repeat} round${repeat === 1 ? '' : 's'} (range); MB/s = 10^6 bytes/s; RSS: median peak of the process, and in brackets the most it rose during one upload`);
  console.log('CPU = user + system time of the side\'s process (all threads) during the timed window.\n');
  console.log(`| workload | side | MB/s | ratio to each baseline | peak RSS | CPU s/GiB |${traceGc ? ' full GCs/GiB |' : ''}`);
  console.log(`|---|---|---:|---|---:|---:|${traceGc ? '---:|' : ''}`);
  for (const workload of workloads) {
    const gib = (workload.count * workload.size) / GiB;
    const baselines = Object.keys(workload.targets) as Side[];
    for (const side of sidesOf(workload)) {
      const rs = of(workload, side);
      const ratios = baselines.includes(side) ? '' : baselines.map((b) => `${fmt(mbps(rs) / mbps(of(workload, b)), 2)}× ${b}`).join(', ');
      const growth = Math.max(...rs.map((r) => r.window.peakRssBytes - r.window.startRssBytes));
      const gcs = side === 'seed' ? '—' : fmt(median(rs.map((r) => r.markCompacts)) / gib, 0);
      console.log(
        `| ${workload.label} | ${side} | ${fmt(mbps(rs), 0)} (${range(rs)}) | ${ratios} | ${fmtMiB(median(rs.map((r) => r.window.peakRssBytes)))} (+${fmtMiB(growth)}) | ` +
          `${fmt(median(rs.map((r) => r.window.cpuSeconds)) / gib, 2)} |${traceGc ? ` ${gcs} |` : ''}`,
      );
    }
  }
  const servers = (['server', 'before'] as const).filter((side) => runs.some((r) => r.side === side));
  for (const side of servers) {
    const afterRss = workloads.map((w) => `${w.label} ${fmtMiB(Math.max(...of(w, side).map((r) => r.after?.peakRssBytes ?? 0)))}`);
    console.log(`\n${side}: peak RSS while its inspect jobs read the uploads back: ${afterRss.join(', ')}`);
  }

  console.log('\n## Targets (medians of the same run)');
  for (const workload of workloads) {
    for (const [baseline, target] of Object.entries(workload.targets) as [Side, number][]) {
      const ratio = mbps(of(workload, 'server')) / mbps(of(workload, baseline));
      console.log(`  ${ratio >= target ? 'met   ' : 'MISSED'}  ${workload.label}: server/${baseline} ${fmt(ratio, 2)}× (target ≥ ${target}×)`);
    }
  }
  const big = workloads.find((w) => w.key === '1x1GiB');
  const small = workloads.find((w) => w.key === '1x256MiB');
  if (!big || !small) return;
  const peak = (w: Workload) => median(of(w, 'server').map((r) => r.window.peakRssBytes));
  const bigGrowth = Math.max(...of(big, 'server').map((r) => r.window.peakRssBytes - r.window.startRssBytes));
  const growth = peak(big) - peak(small);
  const flat = growth <= FLAT_RSS_SLACK && bigGrowth <= FLAT_RSS_SLACK;
  console.log(
    `  ${flat ? 'met   ' : 'MISSED'}  flat RSS: server peak ${fmtMiB(peak(small))} for 256 MiB, ${fmtMiB(peak(big))} for 1 GiB ` +
      `(${growth >= 0 ? '+' : ''}${fmtMiB(growth)}); rose at most ${fmtMiB(bigGrowth)} during a 1 GiB upload (target: both ≤ ${fmtMiB(FLAT_RSS_SLACK)})`,
  );
}

const loadAverage = () => os.loadavg().map((l) => fmt(l, 1)).join(' ');

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
