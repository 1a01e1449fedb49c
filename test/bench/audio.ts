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
// Rounds alternate which side goes first; the table shows medians and the ratio job / plain.
//
// Settings (environment): AUDIO_BENCH_ROUNDS=3.
import { execFile } from 'node:child_process';
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

async function timed(work: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await work();
  return (performance.now() - started) / 1000;
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
    const job: number[] = [];
    const plain: number[] = [];
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
    console.log(`  plain AAC encode   ${fmt(median(plain))} s  (${plain.map((s) => fmt(s)).join(', ')})`);
    console.log(`  audio job          ${fmt(median(job))} s  (${job.map((s) => fmt(s)).join(', ')})`);
    console.log(`  ratio job / plain  ${fmt(median(job) / median(plain))}×`);
  }
  console.log(`\nload at the end ${os.loadavg().map((l) => fmt(l, 1)).join(' ')}`);
} finally {
  await pool.close();
  await fs.rm(root, { recursive: true, force: true });
}
