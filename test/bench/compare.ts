// `npm run bench:compare`: before and after in one run on this node. BENCH_BASELINE_DIR names the
// "before" checkout (with node_modules, e.g. `git worktree add ../before <rev> && npm ci`); this
// checkout is "after". Runs, one after the other, each with both sides in interleaved rounds:
//   run.ts     upload throughput (the plain PATCH, tus-js-client uploads), before and after side by side
//   s3.ts      S3 uploads, each round's ratio to lib-storage's Upload of that round
//   memory.ts  footprint of the embedded default's process tree (first start, idle, uploads)
//   media      each checkout's own media bench (image and video pipeline ratios), one round per
//              side, the sides taking turns (mediaRatios.ts)
// then prints one markdown table: medians (range) of each side, after/before, and "worse" where
// after's median is worse than before's worst round (beyond the noise of the run).
//
// Settings (environment): BENCH_REPEAT=5 rounds everywhere; BENCH_PARTS=run,s3,memory,media to
// run some parts only; BENCH_SCALE as in the benches.
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { reachableTempDir } from '../support/reachableTempDir.ts';
import { fmt, median, positiveInt, reportCompared, type ComparedFigure } from './common.ts';
import { preloadArgs, repoRoot } from './processes.ts';

const before = process.env.BENCH_BASELINE_DIR ? path.resolve(process.env.BENCH_BASELINE_DIR) : undefined;
if (!before) throw new Error('BENCH_BASELINE_DIR: the checkout to compare this one with');
const rounds = positiveInt('BENCH_REPEAT', 5);
const parts = (process.env.BENCH_PARTS ?? 'run,s3,memory,media').split(',');

/** Runs `node args` in `cwd` with the output passed through; rejects on a non-zero exit. */
function node(args: string[], cwd: string, env: Record<string, string | undefined>): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd, env: { ...process.env, ...env }, stdio: 'inherit' });
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`node ${args.join(' ')} exited with ${code}`))));
  });
}

async function media(summary: string, dir: string): Promise<void> {
  const out = { before: path.join(dir, 'media-before.jsonl'), after: path.join(dir, 'media-after.jsonl') };
  const driver = path.join(repoRoot, 'test/bench/mediaRatios.ts');
  for (let round = 1; round <= rounds; round++) {
    const sides = round % 2 === 1 ? (['before', 'after'] as const) : (['after', 'before'] as const);
    for (const side of sides) {
      const checkout = side === 'before' ? before! : repoRoot;
      await node(['--initial-old-space-size=128', '--expose-gc', ...(await preloadArgs(checkout)), driver, checkout, out[side]], checkout, { MEDIA_BENCH_ROUNDS: '1', BENCH_SUMMARY: undefined });
    }
  }
  const read = async (file: string) => (await fs.readFile(file, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as { image: number; video: number });
  const [b, a] = [await read(out.before), await read(out.after)];
  process.env.BENCH_SUMMARY = summary;
  await reportCompared([
    { figure: 'image pipeline / bare processor (throughput)', unit: '×', better: 'higher', before: b.map((r) => r.image), after: a.map((r) => r.image) },
    { figure: 'video pipeline / bare ffmpeg (time)', unit: '×', better: 'lower', before: b.map((r) => r.video), after: a.map((r) => r.video) },
  ]);
}

function table(figures: ComparedFigure[]): string {
  const show = (values: number[]) => `${fmt(median(values), 2)} (${fmt(Math.min(...values), 2)}–${fmt(Math.max(...values), 2)})`;
  const lines = ['| figure | unit | before | after | after/before | beyond noise |', '|---|---|---:|---:|---:|---|'];
  for (const f of figures) {
    const worst = f.better === 'higher' ? Math.min(...f.before) : Math.max(...f.before);
    const worse = f.better === 'higher' ? median(f.after) < worst : median(f.after) > worst;
    lines.push(`| ${f.figure} | ${f.unit} (${f.better} is better) | ${show(f.before)} | ${show(f.after)} | ${fmt(median(f.after) / median(f.before), 2)} | ${worse ? 'WORSE' : 'no'} |`);
  }
  return lines.join('\n');
}

const dir = await reachableTempDir('tus-compare-');
try {
  const summary = path.join(dir, 'summary.jsonl');
  const started = new Date();
  const load = () => os.loadavg().map((l) => fmt(l, 1)).join(' ');
  console.log(`before/after — ${started.toISOString()}, node ${process.version}, ${os.availableParallelism()} CPUs, load average ${load()}, ${rounds} rounds\n  before ${before}\n  after  ${repoRoot}`);
  const env = { BENCH_SUMMARY: summary, BENCH_BASELINE_DIR: before, BENCH_REPEAT: String(rounds) };
  if (parts.includes('run')) await node(['test/bench/run.ts'], repoRoot, env);
  if (parts.includes('s3')) await node(['test/bench/s3.ts'], repoRoot, { ...env, BENCH_SLOW: '0' });
  if (parts.includes('memory')) await node(['test/bench/memory.ts'], repoRoot, { ...env, BENCH_ONLY: 'embedded' });
  if (parts.includes('media')) await media(summary, dir);
  const figures = (await fs.readFile(summary, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as ComparedFigure);
  console.log(`\n## Before/after: medians of ${rounds} interleaved rounds (range), same run, node ${process.version}`);
  console.log(`started ${started.toISOString()}, load average at the end ${load()}\n`);
  console.log(table(figures));
} finally {
  await fs.rm(dir, { recursive: true, force: true });
}
