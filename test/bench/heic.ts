// HEIC against JPEG through imageJob, in one run (ratios, as the machine is shared):
//   npm exec -- node test/bench/heic.ts
// The same 12 MP picture (4032x3024 stored, displayed portrait) as an iPhone-like grid HEIC
// (48 HEVC tiles, irot, EXIF) and as a camera JPEG (quality 90, EXIF orientation 6); imageJob
// makes the three outputs from each, ROUNDS times, alternating. Also heif-convert alone, with its
// peak RSS (GNU time), to separate its decode from sharp's share.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { imageJob } from '../../processors/imageJob.ts';
import { iphoneHeic } from '../support/heicSamples.ts';
import { photoPixels } from '../support/imageSamples.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const run = promisify(execFile);
sharp.cache(false);

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function timeJob(input: string, dir: string): Promise<number> {
  const outputDir = await fs.mkdtemp(path.join(dir, 'out-'));
  const started = performance.now();
  const outcome = await imageJob({ kind: 'image', input, outputDir, timeoutMs: 120_000, maxPixels: 100_000_000 });
  const ms = performance.now() - started;
  if (!outcome.ok) throw new Error(`imageJob refused ${input}: ${outcome.reason}`);
  await fs.rm(outputDir, { recursive: true, force: true });
  return ms;
}

async function timeHeifConvert(input: string, dir: string): Promise<{ ms: number; maxRssMiB: number }> {
  const target = path.join(dir, 'decoded.jpg');
  const started = performance.now();
  const { stderr } = await run('/usr/bin/time', ['-f', '%M', 'heif-convert', '--quiet', '-q', '95', input, target]);
  const ms = performance.now() - started;
  await fs.rm(target, { force: true });
  return { ms, maxRssMiB: Number(stderr.trim().split('\n').at(-1)) / 1024 };
}

export async function runHeicBench(): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bench-heic-'));
  try {
    const pixels = photoPixels(4032, 3024);
    const heic = await iphoneHeic(dir, pixels);
    const jpeg = path.join(dir, 'camera.jpg');
    await sharp(pixels, { raw: { width: 4032, height: 3024, channels: 3 } }).jpeg({ quality: 90 }).withMetadata({ orientation: 6 }).toFile(jpeg);
    await timeJob(jpeg, dir); // warm-up: libvips and the JIT
    const heicMs: number[] = [];
    const jpegMs: number[] = [];
    const convert: Array<{ ms: number; maxRssMiB: number }> = [];
    for (let i = 0; i < ROUNDS; i++) {
      jpegMs.push(await timeJob(jpeg, dir));
      heicMs.push(await timeJob(heic, dir));
      convert.push(await timeHeifConvert(heic, dir));
    }
    const h = median(heicMs);
    const j = median(jpegMs);
    const c = median(convert.map((x) => x.ms));
    console.log(`\n## HEIC: 12 MP iPhone-like grid HEIC vs the same picture as a JPEG, imageJob, median of ${ROUNDS}\n`);
    console.log('| | time | ratio to JPEG |');
    console.log('|---|---:|---:|');
    console.log(`| imageJob, 12 MP JPEG (baseline) | ${Math.round(j)} ms | 1.00× |`);
    console.log(`| imageJob, 12 MP HEIC (heif-convert + sharp) | ${Math.round(h)} ms | ${(h / j).toFixed(2)}× |`);
    console.log(`| heif-convert alone (to a q95 JPEG) | ${Math.round(c)} ms, peak RSS ${Math.round(Math.max(...convert.map((x) => x.maxRssMiB)))} MiB | ${(c / j).toFixed(2)}× |`);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

await runHeicBench();
