// The whole new video job against today's, in one run (ratios, as the machine is shared):
//   npm run bench:hls
// The same 30 s 1920x1080 H.264 + AAC clip (`benchmarkClip`) through `videoJob`, ROUNDS times,
// alternating which goes first:
//   today   mp4 + poster + thumbnail (HLS and storyboard off: the job before they existed)
//   new     mp4 + HLS ladder (HLS_LADDER from the environment, else the default; the default HLS_SEGMENT) + storyboard + poster + thumbnail
// Wall time, and CPU time of the job's ffmpeg/ffprobe children (reaped, so counted in this
// process's cutime/cstime) plus this process's own. Prints medians, each round's ratios and the
// bytes of each rendition. Target: new ≤ 1.6 × today.
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { HlsSettings } from '../../processors/hlsLadder.ts';
import type { ProducedOutput } from '../../processors/mediaTasks.ts';
import { videoJob } from '../../processors/videoJob.ts';
import { loadConfig } from '../../server/infra/settings/config.ts';
import { benchmarkClip } from '../support/videoSamples.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const TARGET = 1.6;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** CPU seconds of this process and its reaped children (/proc/self/stat: utime stime cutime cstime, in clock ticks). */
function cpuSeconds(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return fields.slice(11, 15).map(Number).reduce((a, b) => a + b, 0) / 100;
}

interface Timed {
  wallS: number;
  cpuS: number;
  outputs: ProducedOutput[];
}

async function timeJob(input: string, dir: string, hls: HlsSettings | undefined): Promise<Timed> {
  const outputDir = await fs.mkdtemp(path.join(dir, 'out-'));
  const cpu = cpuSeconds();
  const started = performance.now();
  const outcome = await videoJob({ kind: 'video', input, outputDir, timeoutMs: 30 * 60_000, maxPixels: 7680 * 4320, hls, storyboard: hls !== undefined });
  const wallS = (performance.now() - started) / 1000;
  const cpuS = cpuSeconds() - cpu;
  if (!outcome.ok) throw new Error(`videoJob refused the clip: ${outcome.reason}`);
  await fs.rm(outputDir, { recursive: true, force: true });
  return { wallS, cpuS, outputs: outcome.outputs };
}

const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bench-hls-'));
try {
  const clip = await benchmarkClip(dir);
  const hls = loadConfig({ HLS: 'on', ...(process.env.HLS_LADDER ? { HLS_LADDER: process.env.HLS_LADDER } : {}) }).hls!; // HLS_LADDER to measure another ladder
  console.log(`# video job: today vs with HLS + storyboard — ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(1)}`);
  console.log(`clip: 30 s 1920x1080 H.264 + AAC; ladder ${hls.ladder.map((r) => `${r.shortSide}p@${r.maxrate / 1e6}M`).join(', ')}, ${hls.segmentSeconds} s segments; ${ROUNDS} rounds\n`);
  const today: Timed[] = [];
  const full: Timed[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    if (round % 2 === 0) {
      today.push(await timeJob(clip, dir, undefined));
      full.push(await timeJob(clip, dir, hls));
    } else {
      full.push(await timeJob(clip, dir, hls));
      today.push(await timeJob(clip, dir, undefined));
    }
    console.log(`round ${round + 1}: today ${today[round]!.wallS.toFixed(1)} s wall / ${today[round]!.cpuS.toFixed(1)} s CPU; new ${full[round]!.wallS.toFixed(1)} s / ${full[round]!.cpuS.toFixed(1)} s; ratio wall ${(full[round]!.wallS / today[round]!.wallS).toFixed(2)}×, CPU ${(full[round]!.cpuS / today[round]!.cpuS).toFixed(2)}×`);
  }
  const wall = median(full.map((f, i) => f.wallS / today[i]!.wallS));
  const cpu = median(full.map((f, i) => f.cpuS / today[i]!.cpuS));
  console.log(`\nmedian ratio (new / today): wall ${wall.toFixed(2)}×, CPU ${cpu.toFixed(2)}× — target ≤ ${TARGET}×: ${cpu <= TARGET ? 'met' : 'MISSED'} (CPU, the steadier figure on a shared machine)`);
  const last = full.at(-1)!;
  const mp4 = last.outputs.find((o) => o.name === 'mp4')!;
  console.log('\n| output | size | bytes |\n|---|---|---|');
  console.log(`| mp4 (today's and the new job's) | ${mp4.width}x${mp4.height} | ${today.at(-1)!.outputs.find((o) => o.name === 'mp4')!.size} / ${mp4.size} |`);
  const renditions = (last.outputs.find((o) => o.name === 'hls')!.details!.renditions as { name: string; width: number; height: number; bytes: number }[]);
  for (const r of renditions) console.log(`| hls ${r.name} | ${r.width}x${r.height} | ${r.bytes} |`);
  const storyboard = last.outputs.find((o) => o.name === 'storyboard')!;
  console.log(`| storyboard (sprite + vtt) | ${storyboard.width}x${storyboard.height} | ${storyboard.size} |`);
} finally {
  await fs.rm(dir, { recursive: true, force: true });
}
