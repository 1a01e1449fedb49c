// Audio bench: what the audio job (two-pass loudnorm, AAC m4a, waveform, on the media pool) costs
// against a plain AAC encode of the same file, measured in the same run on the same box.
//
//   node test/bench/audio.ts          (`npm run bench:audio`; also the last part of `npm run bench`)
//
// Samples (generated with ffmpeg, not timed): a 2 min mono voice note as an iPhone writes it
// (AAC 64k in M4A) and a 1 min stereo MP3 (`test/support/audioSamples.ts`).
//   job    `audioJob` on `createMediaPool(1)`, the pool and worker entry the server uses:
//          ffprobe, loudnorm's measuring pass, then one decode → normalised AAC 128k m4a + waveform.
//   plain  one ffmpeg run: the same input → AAC 128k m4a, +faststart, no normalisation, no waveform.
// Rounds alternate which side goes first; the table shows medians and the ratio job / plain, of
// wall time and of CPU time (this process's threads and its ended children: ffmpeg, ffprobe).
//
// Settings (environment): AUDIO_BENCH_ROUNDS=3.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { AAC } from '../../processors/encoderPresets.ts';
import { createMediaPool } from '../../processors/mediaPool.ts';
import { mp3, phoneM4a } from '../support/audioSamples.ts';
import { reachableTempDir } from '../support/reachableTempDir.ts';

const rounds = Number(process.env.AUDIO_BENCH_ROUNDS ?? 3);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`AUDIO_BENCH_ROUNDS: "${process.env.AUDIO_BENCH_ROUNDS}" is not a whole number ≥ 1`);

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const fmt = (n: number, digits = 2) => n.toFixed(digits);

/** CPU seconds of this process (every thread) and of its children that have ended (ffmpeg, ffprobe): /proc's cutime + cstime, at 100 ticks a second. */
function cpuSeconds(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  const children = (Number(fields[13]) + Number(fields[14])) / 100;
  const own = process.cpuUsage();
  return children + (own.user + own.system) / 1e6;
}

/** Wall and CPU seconds of one run: on a shared, noisy box the CPU shows the work whatever the neighbours do. */
async function timed(work: () => Promise<unknown>): Promise<{ wall: number; cpu: number }> {
  const started = performance.now();
  const cpu0 = cpuSeconds();
  await work();
  return { wall: (performance.now() - started) / 1000, cpu: cpuSeconds() - cpu0 };
}

const root = await reachableTempDir('audio-bench-');
const pool = createMediaPool(1);
try {
  console.log(`audio bench — node ${process.version}, ${os.availableParallelism()} CPUs, load ${os.loadavg().map((l) => fmt(l, 1)).join(' ')}, ${rounds} round(s)`);
  const samples = [
    { name: '2 min mono voice note (AAC 64k M4A)', file: await phoneM4a(root, { seconds: 120 }) },
    { name: '1 min stereo MP3 (96k)', file: await mp3(root, { seconds: 60, channels: 2 }) },
  ];
  let run = 0;
  for (const { name, file } of samples) {
    const job: Array<{ wall: number; cpu: number }> = [];
    const plain: Array<{ wall: number; cpu: number }> = [];
    for (let round = 0; round < rounds; round++) {
      const sides = [
        async () => {
          run += 1;
          const outputDir = path.join(root, `job-${run}`);
          job.push(await timed(async () => {
            const outcome = await pool.run({ kind: 'audio', input: file, outputDir, timeoutMs: 600_000, loudness: -16, waveformPoints: 1000 });
            if (!outcome.ok) throw new Error(`audio job failed: ${outcome.reason}`);
          }));
        },
        async () => {
          run += 1;
          const target = path.join(root, `plain-${run}.m4a`);
          plain.push(await timed(() => promisify(execFile)('ffmpeg', ['-hide_banner', '-nostdin', '-loglevel', 'error', '-i', file, '-map', '0:a', ...AAC, '-movflags', '+faststart', '-f', 'mp4', target])));
        },
      ];
      if (round % 2 === 1) sides.reverse();
      for (const side of sides) await side();
    }
    console.log(`\n## ${name}`);
    const line = (runs: Array<{ wall: number; cpu: number }>) => {
      const wall = median(runs.map((r) => r.wall));
      const cpu = median(runs.map((r) => r.cpu));
      return { wall, cpu, text: `wall ${fmt(wall)} s (${runs.map((r) => fmt(r.wall)).join(', ')}), CPU ${fmt(cpu)} s (${runs.map((r) => fmt(r.cpu)).join(', ')})` };
    };
    const [p, j] = [line(plain), line(job)];
    console.log(`  plain AAC encode   ${p.text}`);
    console.log(`  audio job          ${j.text}`);
    console.log(`  ratio job / plain  wall ${fmt(j.wall / p.wall)}×, CPU ${fmt(j.cpu / p.cpu)}×`);
  }
  console.log(`\nload at the end ${os.loadavg().map((l) => fmt(l, 1)).join(' ')}`);
} finally {
  await pool.close();
  await fs.rm(root, { recursive: true, force: true });
}
