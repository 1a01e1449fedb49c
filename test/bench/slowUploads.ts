// `npm run bench` (last part), or `npm exec -- node test/bench/slowUploads.ts`: many concurrent slow
// uploads on ONE server instance, on Postgres (a fresh database on the test server, upload locks
// from server/postgresLocker.ts) against the embedded default (the Postgres server the process
// runs, the same PostgresLocker over its Unix socket) as the baseline, both child processes in the same run, both with the folder store, SCAN=off and
// RUN_JOBS=false (an upload-only server). Reports time against the ideal (the trickle alone),
// the Postgres/embedded ratio, the most database connections seen (pg_stat_activity, sampled),
// the most advisory locks held, the most PATCHes in flight, and whether every stored file is
// whole (sha256 of the bytes on disk against what was sent). Exits non-zero on an error, never
// because a target was missed (it reports those).
//
// Settings (environment):
//   BENCH_SCALE=1         divide every size and rate by this (e.g. 4 for a quick smoke run)
//   BENCH_LOG_LEVEL=warn  LOG_LEVEL of the servers
//   BENCH_VERBOSE=1       echo the children's output
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { testDatabaseUrl } from '../services/env.ts';
import { reachableTempDir } from '../support/reachableTempDir.ts';
import { createTestDatabase } from '../support/testServer.ts';
import { fmt, MiB, positiveInt, serverEnv, settleDisk } from './common.ts';
import { sampleSessions, type SessionPeaks } from './databaseSessions.ts';
import { repoRoot, runBench, sleep, startServerOf, type ChildServer } from './processes.ts';
import { slowUpload } from './slowClient.ts';

const KiB = 1024;
const TARGET_CONNECTIONS = 10;
/**
 * Uploads start this far apart: a thousand clients do not connect in the same millisecond, and a
 * thousand SYNs at once overflow the listen backlog (511) into resets. It adds count × rampMs to
 * the ideal.
 */
const rampMs = 1;
/** The embedded Postgres's first start (initdb) is slow on a busy machine. */
const startTimeoutMs = 180_000;
const scale = positiveInt('BENCH_SCALE', 1);

interface Workload {
  label: string;
  count: number;
  size: number;
  bytesPerSecond: number;
}
const workloads: Workload[] = [
  // The measurement: 20.4 s on Postgres, 8.4 s embedded, before the locks moved to one session.
  { label: '100 × 8 MiB at 1 MiB/s', count: 100, size: (8 * MiB) / scale, bytesPerSecond: MiB / scale },
  { label: '1000 × 512 KiB at 64 KiB/s', count: 1000, size: (512 * KiB) / scale, bytesPerSecond: (64 * KiB) / scale },
];

type Side = 'embedded' | 'postgres';
interface Run {
  seconds: number;
  whole: number;
  failed: number;
  firstFailure: string | undefined;
  peakPatches: number;
  /** CPU the bench process (the clients) used: far below the wall time means it was not the bottleneck. */
  clientCpuSeconds: number;
  sessions: SessionPeaks | undefined;
}

async function main(): Promise<void> {
  const started = performance.now();
  console.log(`slow uploads bench — node ${process.version}, ${os.availableParallelism()} CPUs, load average ${os.loadavg()[0]!.toFixed(1)}`);
  const database = await createTestDatabase();
  drops.push(database.drop);
  const databaseName = new URL(database.url).pathname.slice(1);
  const dirs = { embedded: path.join(tempRoot, 'embedded'), postgres: path.join(tempRoot, 'postgres') };
  const servers: Record<Side, ChildServer> = {
    embedded: await startServerOf(repoRoot, 'embedded', { ...serverEnv(dirs.embedded), RUN_JOBS: 'false' }, [], { timeoutMs: startTimeoutMs }),
    postgres: await startServerOf(repoRoot, 'postgres', { ...serverEnv(dirs.postgres), RUN_JOBS: 'false', DATABASE_URL: database.url }, [], { timeoutMs: startTimeoutMs }),
  };
  children.push(servers.embedded, servers.postgres);
  console.log(`embedded  pid ${servers.embedded.pid} ${servers.embedded.url} (embedded Postgres, folder store)`);
  console.log(`postgres  pid ${servers.postgres.pid} ${servers.postgres.url} (DATABASE_URL ${testDatabaseUrl.replace(/\/[^/]*$/, '')}/${databaseName}, folder store)`);

  const results: { workload: Workload; runs: Record<Side, Run> }[] = [];
  for (const workload of workloads) {
    const runs = {} as Record<Side, Run>;
    for (const side of ['embedded', 'postgres'] as const) {
      const sampler = side === 'postgres' ? await sampleSessions(testDatabaseUrl, databaseName) : undefined;
      const run = await runOnce(workload, servers[side], dirs[side]);
      run.sessions = await sampler?.stop();
      runs[side] = run;
      console.log(
        `  ${workload.label.padEnd(28)} ${side.padEnd(8)} ${fmt(run.seconds, 1).padStart(5)} s  whole ${run.whole}/${workload.count}  ` +
          `PATCHes in flight ≤ ${run.peakPatches}  client CPU ${fmt(run.clientCpuSeconds, 1)} s` +
          (run.failed ? `  FAILED ${run.failed} (first: ${run.firstFailure})` : '') +
          (run.sessions ? `  connections ≤ ${run.sessions.connections} (lock sessions ${run.sessions.lockSessions})  advisory locks ≤ ${run.sessions.advisoryLocks}` : ''),
      );
    }
    results.push({ workload, runs });
  }
  report(results);
  console.log(`\ntotal ${fmt((performance.now() - started) / 1000, 0)} s`);
}

/** Every upload of `workload` at once, timed from the first POST to the last PATCH's answer; then each stored file hashed. */
async function runOnce(workload: Workload, server: ChildServer, dataDir: string): Promise<Run> {
  await settleDisk();
  let inFlight = 0;
  let peakPatches = 0;
  const onPatch = (starting: boolean) => {
    inFlight += starting ? 1 : -1;
    peakPatches = Math.max(peakPatches, inFlight);
  };
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const settled = await Promise.allSettled(
    Array.from({ length: workload.count }, async (_, i) => {
      await sleep(i * rampMs);
      return slowUpload(server.url, i, workload.size, workload.bytesPerSecond, onPatch);
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const failures = settled.flatMap((s) => (s.status === 'rejected' ? [s.reason as Error] : []));
  const firstFailure = failures[0] && `${failures[0].message}: ${(failures[0].cause as Error | undefined)?.message ?? ''}`;
  let whole = 0;
  for (const upload of settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []))) {
    const file = path.join(dataDir, 'uploads', upload.id);
    const hash = createHash('sha256');
    await pipeline(createReadStream(file), hash);
    if (hash.digest('hex') === upload.sha256) whole++;
    await fs.rm(file);
  }
  return { seconds, whole, failed: failures.length, firstFailure, peakPatches, clientCpuSeconds: (cpu.user + cpu.system) / 1e6, sessions: undefined };
}

function idealSeconds(workload: Workload): number {
  return workload.size / workload.bytesPerSecond + (workload.count * rampMs) / 1000;
}

function report(results: { workload: Workload; runs: Record<Side, Run> }[]): void {
  console.log(`\n## Results (one run each; ideal = size / rate, the trickle alone, + ${rampMs} ms per upload of start ramp)\n`);
  console.log('| workload | ideal | embedded (baseline) | postgres | postgres / embedded | peak DB connections (lock sessions) | peak advisory locks | peak PATCHes in flight | whole files |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const { workload, runs } of results) {
    const ideal = idealSeconds(workload);
    const cell = (run: Run) => `${fmt(run.seconds, 1)} s (${fmt(run.seconds / ideal, 2)}× ideal)`;
    const pg = runs.postgres;
    console.log(
      `| ${workload.label} | ${fmt(ideal, 1)} s | ${cell(runs.embedded)} | ${cell(pg)} | ${fmt(pg.seconds / runs.embedded.seconds, 2)}× | ` +
        `${pg.sessions?.connections} (${pg.sessions?.lockSessions}) | ${pg.sessions?.advisoryLocks} | ${runs.embedded.peakPatches} · ${pg.peakPatches} | ` +
        `${runs.embedded.whole} · ${pg.whole} of ${workload.count} |`,
    );
  }
  console.log('\n## Targets');
  for (const { workload, runs } of results) {
    const pg = runs.postgres;
    const connections = pg.sessions?.connections ?? Infinity;
    const allWhole = pg.whole === workload.count && runs.embedded.whole === workload.count;
    console.log(`  ${connections <= TARGET_CONNECTIONS ? 'met   ' : 'MISSED'}  ${workload.label}: at most ${connections} database connections (target ≤ ${TARGET_CONNECTIONS})`);
    console.log(`  ${pg.peakPatches === workload.count ? 'met   ' : 'MISSED'}  ${workload.label}: ${pg.peakPatches} PATCHes in flight at once on Postgres (all ${workload.count})`);
    console.log(`  ${allWhole ? 'met   ' : 'MISSED'}  ${workload.label}: every file whole (${runs.embedded.whole} · ${pg.whole} of ${workload.count})`);
  }
}

async function cleanup(): Promise<void> {
  await Promise.all(children.splice(0).map((c) => c.stop().catch(() => undefined)));
  for (const drop of drops.splice(0)) await drop().catch(() => undefined);
  await fs.rm(tempRoot, { recursive: true, force: true });
}

const tempRoot = await reachableTempDir('tus-slow-bench-');
const children: ChildServer[] = [];
const drops: (() => Promise<void>)[] = [];
await runBench(main, children, cleanup);
