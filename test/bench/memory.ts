// `npm run bench:memory` (also the last part of `npm run bench`): the memory of `npm start`'s
// process tree — the node process and everything it spawned (a loader's helper process, the embedded
// Postgres and its backends) — as its footprint (private pages, shared ones once: see
// processTree.ts; the targets are judged on it), with PSS and summed RSS alongside.
// For each case, on a fresh DATA_DIR: the peak from spawn until it answers (first start,
// including the database's creation), idle (median of 5 s of samples, 10 s after it listens),
// sampled every 500 ms (smaps reads slow the sampled processes: the upload times printed are
// those of a server under observation),
// and the peak while 16 clients upload 64 MiB each with node:http PATCHes (in this process,
// not counted) until their inspect jobs are done. Cases: the embedded default, and
// DATABASE_URL against a fresh database on the test Postgres (TEST_DATABASE_URL).
//
// Settings (environment):
//   BENCH_BASELINE_DIR   another checkout (with node_modules) measured the same way in the
//                        same run on the same node, e.g. the commit before a change (`git worktree add`)
//   BENCH_REPEAT=1       rounds; the checkouts take turns, the order alternating
//   BENCH_ONLY=embedded  the embedded default only (no DATABASE_URL case)
//   BENCH_SCALE=1        divide the upload size by this (a quick smoke run)
//   BENCH_VERBOSE=1      echo the children's output
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createTestDatabase } from '../support/testServer.ts';
import { plainUpload, settleAndDelete } from './clients.ts';
import { fmtMiB, MiB, positiveInt, reportCompared, serverEnv, settleDisk, writeSource } from './common.ts';
import { repoRoot, sleep, startServerOf } from './processes.ts';
import { watchTree, type TreeMemory } from './processTree.ts';
import { reachableTempDir } from '../support/reachableTempDir.ts';

const TARGETS = { firstStart: 300 * MiB, idle: 150 * MiB, uploads: 250 * MiB, idleWithDatabaseUrl: 120 * MiB };
const UPLOADS = 16;
const uploadSize = (64 * MiB) / positiveInt('BENCH_SCALE', 1);
const rounds = positiveInt('BENCH_REPEAT', 1);
const embeddedOnly = process.env.BENCH_ONLY === 'embedded';

interface Figures {
  label: string;
  firstStart: TreeMemory;
  idle: TreeMemory;
  uploads: TreeMemory;
  uploadSeconds: number;
}

async function measure(label: string, checkout: string, env: Record<string, string>, source: string): Promise<Figures> {
  const dataDir = env.DATA_DIR!;
  let pid: number | undefined;
  const starting = watchTree(() => pid);
  const server = await startServerOf(checkout, label, env, [], { timeoutMs: 180_000, onSpawn: (p) => (pid = p) });
  try {
    const firstStart = starting.stop().peak;
    await sleep(10_000);
    const idle = medianOf(await sampleFor(server.pid, 5_000));

    await settleDisk();
    const uploading = watchTree(() => server.pid);
    const t0 = performance.now();
    const urls = await Promise.all(
      Array.from({ length: UPLOADS }, (_, i) => plainUpload(server.url, { file: source, start: i * uploadSize, length: uploadSize }, `memory-${i}.bin`)),
    );
    const uploadSeconds = (performance.now() - t0) / 1000;
    await Promise.all(urls.map((url) => settleAndDelete(server.url, url.split('/').pop()!)));
    const uploads = uploading.stop().peak;
    return { label, firstStart, idle, uploads, uploadSeconds };
  } finally {
    await server.stop();
    await fs.rm(dataDir, { recursive: true, force: true });
  }
}

async function sampleFor(pid: number, ms: number): Promise<TreeMemory[]> {
  const samples: TreeMemory[] = [];
  for (const end = Date.now() + ms; Date.now() < end; await sleep(500)) samples.push(watchTree(() => pid).stop().last);
  return samples;
}

function medianOf(samples: TreeMemory[]): TreeMemory {
  const sorted = [...samples].sort((a, b) => a.footprintBytes - b.footprintBytes);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const show = (m: TreeMemory) => `${fmtMiB(m.footprintBytes)} (PSS ${fmtMiB(m.pssBytes)}, RSS ${fmtMiB(m.rssBytes)}, ${m.processes} proc)`;
const verdict = (m: TreeMemory, target: number) => `${m.footprintBytes <= target ? 'met' : 'MISSED'} ≤ ${fmtMiB(target)}`;

async function main(): Promise<void> {
  console.log(`memory bench — node ${process.version}, ${os.availableParallelism()} CPUs, load average ${os.loadavg()[0]!.toFixed(1)}; footprint of the process tree of npm start (PSS, RSS sum)`);
  const source = path.join(tempRoot, 'source.bin');
  await writeSource(source, UPLOADS * uploadSize);
  const checkouts: [string, string][] = [['this checkout', repoRoot]];
  if (process.env.BENCH_BASELINE_DIR) checkouts.push(['baseline', path.resolve(process.env.BENCH_BASELINE_DIR)]);

  const results: Figures[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const [name, checkout] of round % 2 === 1 ? checkouts : [...checkouts].reverse()) {
      const embedded = serverEnv(path.join(tempRoot, `embedded-${results.length}`));
      results.push(await measure(`${name}, embedded`, checkout, embedded, source));
      if (embeddedOnly) continue;
      const database = await createTestDatabase();
      try {
        const scaleout = { ...serverEnv(path.join(tempRoot, `url-${results.length}`)), DATABASE_URL: database.url };
        results.push(await measure(`${name}, DATABASE_URL`, checkout, scaleout, source));
      } finally {
        await database.drop();
      }
    }
  }
  const rows = (label: string) => results.filter((r) => r.label === label);
  const footprints = (label: string, key: 'firstStart' | 'idle' | 'uploads') => rows(label).map((r) => r[key].footprintBytes / MiB);
  await reportCompared(
    (['firstStart', 'idle', 'uploads'] as const).map((key) => ({
      figure: `memory of the embedded default, ${{ firstStart: 'first start (peak)', idle: 'idle', uploads: `${UPLOADS} × ${fmtMiB(uploadSize)} uploads (peak)` }[key]}`,
      unit: 'MiB',
      better: 'lower' as const,
      before: footprints('baseline, embedded', key),
      after: footprints('this checkout, embedded', key),
    })),
  );

  console.log(`\n| case | first start (peak) | idle (median) | ${UPLOADS} × ${fmtMiB(uploadSize)} uploads (peak) | upload time |`);
  console.log('|---|---:|---:|---:|---:|');
  for (const r of results) console.log(`| ${r.label} | ${show(r.firstStart)} | ${show(r.idle)} | ${show(r.uploads)} | ${r.uploadSeconds.toFixed(1)} s |`);
  console.log('\n## Targets (footprint)');
  for (const r of results.filter((r) => r.label.endsWith('embedded'))) {
    console.log(`  ${r.label}: first start ${verdict(r.firstStart, TARGETS.firstStart)}, idle ${verdict(r.idle, TARGETS.idle)}, uploads ${verdict(r.uploads, TARGETS.uploads)}`);
  }
  for (const r of results.filter((r) => r.label.endsWith('DATABASE_URL'))) console.log(`  ${r.label}: idle ${verdict(r.idle, TARGETS.idleWithDatabaseUrl)}`);
}

const tempRoot = await reachableTempDir('tus-memory-');
try {
  await main();
} catch (error) {
  console.error('\nmemory bench failed:', error);
  process.exitCode = 1;
} finally {
  await fs.rm(tempRoot, { recursive: true, force: true });
}
