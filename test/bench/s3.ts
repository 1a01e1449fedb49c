// `npm run bench:s3`, part of `npm run bench`: uploads into S3 (radosgw, started by
// test/services/radosgw.sh) through the real server against @aws-sdk/lib-storage's `Upload` of the
// same bytes into the same bucket, in the same run. The server side is what a client does: one
// POST and one PATCH with node:http (clients.ts); the server runs the scale-out setup (S3 store,
// a fresh Postgres database, SCAN=off, RUN_JOBS=false). The SDK side is the bench process itself
// with the same client settings as the server's (server/s3Storage.ts) and lib-storage's defaults
// (5 MiB parts, 4 at once). Every stored object is read back and hashed outside the timed window.
// Prints MB/s, the ratio and CPU seconds per GiB of the bench process, the server and radosgw.
// Then slow clients (slowClient.ts) on the same server: more PATCHes trickling at once than the
// parts the store streams at once, timed against the trickle alone, every object read back.
// Exits non-zero on an error, never because a target was missed (it reports those).
//
// Settings (environment):
//   BENCH_REPEAT=5       rounds; each workload runs once per round on each side (the order alternates)
//   BENCH_SCALE=1        divide every size by this (e.g. 4 for a quick smoke run)
//   BENCH_ONLY           run only the workloads whose label starts with this (e.g. "16")
//   BENCH_BASELINE_DIR   another checkout (with node_modules) run as a third side, "before", with the
//                        same settings on the same node, e.g. the commit before a change (`git worktree add`)
//   BENCH_SLOW=100       slow uploads of 8 MiB at 1 MiB/s at once (0: none)
//   BENCH_SERVER_ENV     extra server settings, "NAME=value NAME=value" (e.g. S3_PART_SIZE=16MiB)
//   BENCH_TRACE_GC=1     run the server with --trace-gc and count its full GCs
//   BENCH_CPU_PROF=1     start the server with --cpu-prof; the profile is kept in a temp dir
//   BENCH_LOG_LEVEL=warn LOG_LEVEL of the server
//   BENCH_VERBOSE=1      echo the server's output
import { createReadStream, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { loadConfig } from '../../server/infra/settings/config.ts';
import { s3ClientConfig } from '../../server/infra/store/s3Storage.ts';
import { createTestBucket, servicesDir, testS3 } from '../services/env.ts';
import { reachableTempDir } from '../support/reachableTempDir.ts';
import { createTestDatabase } from '../support/testServer.ts';
import { plainUpload, type Slice } from './clients.ts';
import { slowUpload } from './slowClient.ts';
import { bucketServerEnv, emptyBucket, expectWhole, sha256 } from './bucket.ts';
import { fmt, GiB, median, MiB, positiveInt, reportCompared, writeSource } from './common.ts';
import { repoRoot, runBench, startServerOf, watchProcess, type ChildServer } from './processes.ts';

const TARGET_RATIO = 0.9;
const repeat = positiveInt('BENCH_REPEAT', 5);
const scale = positiveInt('BENCH_SCALE', 1);
const traceGc = process.env.BENCH_TRACE_GC === '1';
const slowCount = Number(process.env.BENCH_SLOW ?? 100);

interface Workload {
  label: string;
  count: number;
  size: number;
}
const workloads: Workload[] = [
  { label: '1 × 256 MiB', count: 1, size: (256 * MiB) / scale },
  { label: '16 × 16 MiB', count: 16, size: (16 * MiB) / scale },
].filter((w) => !process.env.BENCH_ONLY || w.label.startsWith(process.env.BENCH_ONLY));

type Side = 'sdk' | 'server' | 'before';
/** Not measured: JIT, first queries, connections. */
const warm: Workload = { label: 'warm-up', count: 4, size: 16 * MiB };
interface Run {
  workload: Workload;
  side: Side;
  seconds: number;
  mbps: number;
  /** CPU seconds during the timed window: the bench process (the clients), the server, radosgw. */
  cpu: { client: number; server: number; radosgw: number };
  /** The server's full GCs during the window (with BENCH_TRACE_GC=1). */
  markCompacts: number;
}

async function main(): Promise<void> {
  const started = performance.now();
  console.log(`S3 upload bench — node ${process.version}, ${os.availableParallelism()} CPUs, load average ${os.loadavg()[0]!.toFixed(1)}, ${repeat} round(s)`);
  const source = path.join(tempRoot, 'source.bin');
  await writeSource(source, Math.max(...[...workloads, warm].map((w) => w.count * w.size)));

  const database = await createTestDatabase();
  drops.push(database.drop);
  const bucket = await createTestBucket();
  const env: Record<string, string> = { ...bucketServerEnv(path.join(tempRoot, 'data'), database.url, bucket), ...extraServerEnv() };
  // The SDK side uses the client settings the server derives from the same environment.
  const s3 = loadConfig(env).s3!;
  const client = new S3Client(s3ClientConfig(s3));
  const nodeArgs = [
    ...(profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []),
    ...(traceGc ? ['--trace-gc'] : []),
  ];
  const server = await startServerOf(repoRoot, 'server', env, nodeArgs);
  children.push(server);
  const baselineDir = process.env.BENCH_BASELINE_DIR ? path.resolve(process.env.BENCH_BASELINE_DIR) : undefined;
  const before = baselineDir ? await startServerOf(baselineDir, 'before', env, nodeArgs) : undefined;
  if (before) children.push(before);
  const radosgwPid = Number(readFileSync(path.join(servicesDir, 'ceph', 'run', 'client.rgw.tus.pid'), 'utf8'));
  console.log(`server   pid ${server.pid} ${server.url} (S3 ${testS3.endpoint}/${bucket}, part size ${fmt(s3.partSize / MiB, 0)} MiB, Postgres, SCAN=off, RUN_JOBS=false)`);
  console.log(`sdk      @aws-sdk/lib-storage Upload in the bench process (5 MiB parts, 4 at once), same client settings`);
  if (before) console.log(`before   pid ${before.pid} ${before.url} (${baselineDir}, the same settings and database)`);
  console.log(`radosgw  pid ${radosgwPid}`);

  const side = { client, bucket, servers: { server, before }, radosgwPid, source };
  const sides: Side[] = before ? ['sdk', 'server', 'before'] : ['sdk', 'server'];
  for (const which of sides) await runOnce(which, warm, side);

  const runs: Run[] = [];
  for (let round = 1; round <= repeat; round++) {
    console.log(`\nround ${round}/${repeat}`);
    for (const workload of workloads) {
      const order = round % 2 === 1 ? sides : [...sides].reverse();
      for (const which of order) {
        const run = await runOnce(which, workload, side);
        runs.push(run);
        console.log(
          `  ${workload.label.padEnd(12)} ${which.padEnd(6)} ${fmt(run.mbps, 0).padStart(5)} MB/s  ${fmt(run.seconds, 2).padStart(6)} s  ` +
            `CPU s: client ${fmt(run.cpu.client, 2)}, server ${fmt(run.cpu.server, 2)}, radosgw ${fmt(run.cpu.radosgw, 2)}` +
            (traceGc && which !== 'sdk' ? `  server full GCs ${run.markCompacts}` : ''),
        );
      }
    }
  }
  report(runs, sides);
  await reportCompared(
    workloads.map((workload) => {
      // Each round's ratio to the SDK run of that same round.
      const perRound = (side: Side) => {
        const of = (which: Side) => runs.filter((r) => r.workload === workload && r.side === which).map((r) => r.mbps);
        const sdk = of('sdk');
        return of(side).map((mbps, i) => mbps / sdk[i]!);
      };
      return { figure: `S3 upload / lib-storage Upload, ${workload.label}`, unit: '×', better: 'higher', before: perRound('before'), after: perRound('server') };
    }),
  );
  if (slowCount > 0) for (const which of sides.filter((s) => s !== 'sdk')) await slowClients(side, which);
  client.destroy();
  console.log(`\ntotal ${fmt((performance.now() - started) / 1000, 0)} s`);
}

interface Sides {
  client: S3Client;
  bucket: string;
  servers: { server: ChildServer; before: ChildServer | undefined };
  radosgwPid: number;
  source: string;
}

/** One workload on one side: `count` uploads at once, timed from the first request to the last answer. */
async function runOnce(which: Side, workload: Workload, sides: Sides): Promise<Run> {
  const slices: Slice[] = Array.from({ length: workload.count }, (_, i) => ({ file: sides.source, start: i * workload.size, length: workload.size }));
  // The SDK side is measured with the server idle beside it.
  const server = which === 'before' ? sides.servers.before! : sides.servers.server;
  const gc0 = server.gcCount().markCompacts;
  const watchServer = watchProcess(server.pid);
  const watchRadosgw = watchProcess(sides.radosgwPid);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const keys = await Promise.all(
    slices.map(async (slice, i) => {
      if (which !== 'sdk') return (await plainUpload(server.url, slice, `bench-${i}.bin`)).split('/').pop()!;
      const key = `sdk-${Date.now().toString(36)}-${i}`;
      const body = createReadStream(slice.file, { start: slice.start, end: slice.start + slice.length - 1 });
      await new Upload({ client: sides.client, params: { Bucket: sides.bucket, Key: key, Body: body } }).done();
      return key;
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const clientCpu = process.cpuUsage(cpu0);
  const cpu = { client: (clientCpu.user + clientCpu.system) / 1e6, server: watchServer.stop().cpuSeconds, radosgw: watchRadosgw.stop().cpuSeconds };
  const markCompacts = server.gcCount().markCompacts - gc0;
  await Promise.all(keys.map((key, i) => expectWhole(sides.client, sides.bucket, key, slices[i]!)));
  await emptyBucket(sides.client, sides.bucket);
  return { workload, side: which, seconds, mbps: (workload.count * workload.size) / 1e6 / seconds, cpu, markCompacts };
}

function report(runs: Run[], sides: Side[]): void {
  const servers = sides.filter((side) => side !== 'sdk');
  console.log(`\n## Results: median of ${repeat} round${repeat === 1 ? '' : 's'} (range); MB/s = 10^6 bytes/s; CPU s/GiB during the timed window\n`);
  const cpuColumns = servers.map((side) => `${side} side: bench · server · radosgw`).join(' | ');
  console.log(`| workload | SDK MB/s | ${servers.map((side) => `${side} MB/s | ${side}/SDK`).join(' | ')} | CPU s/GiB SDK side: bench · radosgw | ${cpuColumns} |`);
  console.log(`|---|---:|${servers.map(() => '---:|---:|').join('')}---:|${servers.map(() => '---:|').join('')}`);
  const ratios: Array<{ label: string; ratio: number }> = [];
  for (const workload of workloads) {
    const of = (side: Side) => runs.filter((r) => r.workload === workload && r.side === side);
    const gib = (workload.count * workload.size) / GiB;
    const mbps = (rs: Run[]) => median(rs.map((r) => r.mbps));
    const range = (rs: Run[]) => `${fmt(Math.min(...rs.map((r) => r.mbps)), 0)}–${fmt(Math.max(...rs.map((r) => r.mbps)), 0)}`;
    const cpu = (rs: Run[], key: keyof Run['cpu']) => fmt(median(rs.map((r) => r.cpu[key])) / gib, 1);
    const sdk = of('sdk');
    const cells = servers.map((side) => `${fmt(mbps(of(side)), 0)} (${range(of(side))}) | ${fmt(mbps(of(side)) / mbps(sdk), 2)}×`);
    const cpuCells = servers.map((side) => `${cpu(of(side), 'client')} · ${cpu(of(side), 'server')} · ${cpu(of(side), 'radosgw')}`);
    ratios.push({ label: workload.label, ratio: mbps(of('server')) / mbps(sdk) });
    console.log(`| ${workload.label} | ${fmt(mbps(sdk), 0)} (${range(sdk)}) | ${cells.join(' | ')} | ${cpu(sdk, 'client')} · ${cpu(sdk, 'radosgw')} | ${cpuCells.join(' | ')} |`);
  }
  console.log('\n## Targets');
  for (const { label, ratio } of ratios) {
    console.log(`  ${ratio >= TARGET_RATIO ? 'met   ' : 'MISSED'}  ${label}: server/SDK ${fmt(ratio, 2)}× (target ≥ ${TARGET_RATIO}×)`);
  }
}

/**
 * `slowCount` uploads of 8 MiB at 1 MiB/s at once, each one POST and one trickling PATCH: most of
 * their parts find the streams taken and go through their copies. Reports the time against the
 * trickle alone and how many objects hold exactly the bytes sent.
 */
async function slowClients(sides: Sides, which: Side): Promise<void> {
  const server = which === 'before' ? sides.servers.before! : sides.servers.server;
  const size = (8 * MiB) / scale;
  const rate = MiB / scale;
  const ideal = size / rate;
  const t0 = performance.now();
  const settled = await Promise.allSettled(
    Array.from({ length: slowCount }, async (_, i) => {
      await new Promise((r) => setTimeout(r, i));
      return slowUpload(server.url, i, size, rate, () => {});
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  let whole = 0;
  for (const result of settled) {
    if (result.status !== 'fulfilled') continue;
    const { Body } = await sides.client.send(new GetObjectCommand({ Bucket: sides.bucket, Key: result.value.id }));
    if ((await sha256(Body as NodeJS.ReadableStream)) === result.value.sha256) whole++;
  }
  await emptyBucket(sides.client, sides.bucket);
  const failed = settled.flatMap((s) => (s.status === 'rejected' ? [String((s.reason as Error).message)] : []));
  console.log(
    `\n## Slow clients (${which}): ${slowCount} × ${fmt(size / MiB, 0)} MiB at ${fmt(rate / MiB, 2)} MiB/s at once\n` +
      `  ${fmt(seconds, 1)} s (the trickle alone: ${fmt(ideal, 1)} s, ${fmt(seconds / ideal, 2)}×); whole ${whole}/${slowCount}` +
      (failed.length ? `; FAILED ${failed.length} (first: ${failed[0]})` : ''),
  );
}

function extraServerEnv(): Record<string, string> {
  const pairs = (process.env.BENCH_SERVER_ENV ?? '').split(' ').filter(Boolean);
  return Object.fromEntries(pairs.map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]));
}

async function cleanup(): Promise<void> {
  await Promise.all(children.splice(0).map((c) => c.stop().catch(() => undefined)));
  for (const drop of drops.splice(0)) await drop().catch(() => undefined);
  await fs.rm(tempRoot, { recursive: true, force: true });
  if (profileDir) console.log(`\nCPU profile (open in Chrome DevTools or speedscope): ${profileDir}`);
}

const tempRoot = await reachableTempDir('tus-bench-s3-');
const profileDir = process.env.BENCH_CPU_PROF ? await fs.mkdtemp(path.join(os.tmpdir(), 'tus-bench-profiles-')) : undefined;
const children: ChildServer[] = [];
const drops: Array<() => Promise<void>> = [];
await runBench(main, children, cleanup);
