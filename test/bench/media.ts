// Media-processing bench: how close the whole pipeline (upload finished → inspect job → image or
// video job → `ready`) comes to the bare processors, measured in the same run on the same box.
//
//   node --initial-old-space-size=128 --expose-gc test/bench/media.ts
//                                        (what `npm run bench` runs: the server in this process
//                                        gets `npm start`'s node flags; or import runMediaBench)
//
// Images: 20 camera JPEGs of 4000x3000 (one `cameraJpeg`, copied 20 times; not timed).
//   baseline  `imageJob` itself on `createMediaPool(WORKER_THREADS)` (the pool factory and worker
//             entry the server uses), fed by WORKER_THREADS lanes: a lane sends its next file as
//             soon as its last one is back, so every thread is always busy. Same code, same
//             settings, same threads: the ratio isolates what the pipeline adds around the processor.
//   pipeline  the real server (`startServer`) in this process on the embedded default: folder store
//             + embedded Postgres, job runner on, JOB_POLL_INTERVAL 1s (the production default), SCAN=off (the
//             comparison is about processing; no clamd). All 20 are uploaded at once with
//             tus-js-client; throughput = 20 / (last readyAt − first finishedAt), from the status API.
//   sharp     (MEDIA_BENCH_SHARP_LOOP=1) a bare sharp loop on the main thread, WORKER_THREADS at a
//             time, with imageJob's settings: what piscina and imageJob's own checks cost.
//   Rounds alternate which side goes first; the table shows medians and each round's ratio. Every
//   pool (the baseline's and the server's) is warmed right before its timed run (threads start
//   with the first task); what a cold thread costs is measured once, on its own.
// Video: one 30 s 1920x1080 H.264+AAC clip (`benchmarkClip`).
//   pipeline  upload, then finishedAt → readyAt.
//   bare      the ffprobe/ffmpeg command lines the pipeline's video job ran, replayed with spawn
//             (captured, not re-typed), then the same two sharp conversions (poster, thumbnail).
//   Every ffmpeg/ffprobe call goes through a tiny /bin/sh recorder (FFMPEG_PATH / FFPROBE_PATH)
//   that logs its argv, wall time and CPU time (`times`): a few ms per call, on both sides.
//
// CPU seconds are printed next to wall seconds: on a shared, noisy box they show whether the
// pipeline did more *work*, whatever the neighbours did. "main" is this process's main thread
// (server, tus client, bench; the embedded Postgres is a separate process), "threads" everything else in the process (pool threads,
// libvips and libuv threads), ffmpeg's own CPU is counted separately.
//
// Settings (environment):
//   MEDIA_BENCH_IMAGES=20          images per run
//   MEDIA_BENCH_ROUNDS=5           image rounds (0 skips images)
//   MEDIA_BENCH_VIDEO=1            0 skips the video part
//   MEDIA_BENCH_SHARP_LOOP=0       1 adds the main-thread sharp loop to every image round
//   MEDIA_BENCH_JOB_SLOTS=         e.g. `2,4`: run the image pipeline once per round for each number
//                                  of job-runner slots: the WORKER_THREADS createJobRunner sizes its
//                                  lanes by (that many inspections, one more media job); the pool
//                                  keeps WORKER_THREADS threads whatever this says. The server
//                                  then starts with RUN_JOBS=false and the bench starts the server's
//                                  own runner (`createJobRunner(services)`) with each slot count in
//                                  turn. Video uses the first. Unset: the server's runner, as is.
//   MEDIA_BENCH_POSTGRES=0         1: the server uses a fresh database on the test Postgres server
//                                  (test/services/postgres.sh; dropped at the end) instead of
//                                  the embedded Postgres, folder store unchanged
//   WORKER_THREADS                 as for the server (default: the number of CPUs)
//
// Exits non-zero only on an error (an upload not `ready`, a processor failure); a missed target is
// reported, not fatal. Temp files (samples, outputs, the server's DATA_DIR) are removed at the end.
// Measured figures and what they mean: the README, under Benchmarks.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import sharp from 'sharp';
import { JPEG_BACKGROUND, JPEG_RESIZED, JPEG_THUMBNAIL, pictureBox, THUMBNAIL_BOX, WEBP } from '../../processors/encoderPresets.ts';
import { createMediaPool, type MediaPool } from '../../processors/mediaPool.ts';
import type { MediaOutcome, MediaTask } from '../../processors/mediaTasks.ts';
import type { Config } from '../../server/infra/settings/config.ts';
import type { JobRunner } from '../../server/jobs/jobRunner.ts';
import type { UploadStatusJson as UploadStatusBody } from '../../hooks/uploadStatusJson.ts';
import { createJobRunner, startServer, type RunningServer } from '../../server/main/start.ts';
import { cameraJpeg } from '../support/imageSamples.ts';
import { createTestDatabase, createTestEnvironment, type TestEnvironment } from '../support/testServer.ts';
import { fetchStatus, tusUpload, uploadIdOf } from '../support/uploads.ts';
import { benchmarkClip } from '../support/videoSamples.ts';
import { reachableTempDir } from '../support/reachableTempDir.ts';

const IMAGE_TARGET = 0.9;
const VIDEO_TARGET = 1.1;

// ---------------------------------------------------------------------------------------------
// Results

export interface Spread {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

/** CPU seconds: this process's main thread, its other threads, and ffmpeg/ffprobe children. */
export interface Cpu {
  main: number;
  threads: number;
  ffmpeg: number;
}

export interface ImageBreakdown {
  /** Medians over all images of all rounds, ms. */
  inspectMs: number;
  /** inspect job committed → image job started: waiting for one of the job slots. */
  slotWaitMs: number;
  /** image job started → pool task started: find the upload, mkdtemp, copy the original. */
  beforePoolMs: number;
  /** the pool task: imageJob on a worker thread. */
  poolMs: number;
  /** pool task done → job committed: store the 3 outputs, remove the temp dir, commit. */
  afterPoolMs: number;
  /** readyAt − finishedAt of one image. */
  latencyMs: number;
  /** ∫ min(tasks in the pool, threads) dt / (threads × window): how busy the pool's threads were (baseline ≈ 100 %). */
  poolBusyShare: number;
  /** First upload of a round, medians over rounds (ms): finishedAt → inspect job start. */
  firstInspectClaimMs: number;
  /** … and first finishedAt → first pool task start. */
  firstPoolStartMs: number;
  /** first finishedAt → last finishedAt: how long the uploads of a round kept arriving, ms. */
  uploadSpreadMs: number;
  /** last pool task end → last readyAt, ms. */
  tailMs: number;
}

export interface PipelineResult {
  /** Job-runner slots (the server's default: WORKER_THREADS). */
  jobSlots: number;
  /** images/s = count / (last readyAt − first finishedAt) */
  throughput: Spread;
  /** median pipeline / median baseline */
  ratio: number;
  /** pipeline / baseline of each round */
  roundRatios: number[];
  /** median CPU seconds per image, uploads included (the tus client too: same process, main thread) */
  cpuPerImage: Cpu;
  /** median CPU seconds per image from the moment every upload had returned until all were ready: the jobs' share */
  jobsCpuPerImage: Cpu;
  breakdown: ImageBreakdown;
}

export interface ImageResult {
  count: number;
  rounds: number;
  threads: number;
  /** images/s */
  baseline: Spread;
  /** median CPU seconds per image */
  baselineCpu: Cpu;
  /** Median ms of one task on the baseline pool. */
  baselineTaskMs: number;
  /** The first is the server as configured (or the first of MEDIA_BENCH_JOB_SLOTS). */
  pipelines: PipelineResult[];
  sharpLoop: { throughput: Spread; cpuPerImage: Cpu } | undefined;
  /** pipelines[0].ratio */
  ratio: number;
  target: number;
  met: boolean;
  /** First image task on a fresh pool (thread start, sharp, imageJob) vs a warm one, ms. */
  coldTaskMs: number;
}

export interface VideoStep {
  step: string;
  wall: number;
  cpu: number;
}

export interface VideoResult {
  clipBytes: number;
  bare: { seconds: number; cpu: Cpu; steps: VideoStep[] };
  pipeline: {
    seconds: number;
    cpu: Cpu;
    steps: VideoStep[];
    uploadSeconds: number;
    /** finishedAt → inspect job start */
    inspectClaimSeconds: number;
    inspectSeconds: number;
    slotWaitSeconds: number;
    /** find, mkdtemp, copy the original to a temp file */
    beforePoolSeconds: number;
    poolSeconds: number;
    /** pool task start → first ffprobe start */
    poolToFirstCallSeconds: number;
    /** store the outputs, remove the temp dir, commit */
    afterPoolSeconds: number;
  };
  ratio: number;
  cpuRatio: number;
  target: number;
  met: boolean;
  /** The x264 command line the video job ran. */
  mp4Command: string[];
}

export interface MediaBenchResult {
  threads: number;
  images: ImageResult | undefined;
  video: VideoResult | undefined;
  seconds: number;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function intEnv(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new Error(`${name}: "${raw}" is not a whole number ≥ ${min}`);
  return value;
}

function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function spread(runs: number[]): Spread {
  return { median: median(runs), min: Math.min(...runs), max: Math.max(...runs), runs };
}

const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const pct = (n: number) => `${fmt(n * 100, 0)} %`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const msOf = (date: unknown) => new Date(date as string).getTime();

/** CPU of the main thread, from /proc (clock ticks); the whole process from getrusage (includes exited threads). */
function mainThreadSeconds(): number {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function cpuMeter(): () => Omit<Cpu, 'ffmpeg'> {
  const total0 = process.cpuUsage();
  const main0 = mainThreadSeconds();
  return () => {
    const d = process.cpuUsage(total0);
    const main = mainThreadSeconds() - main0;
    return { main, threads: Math.max(0, (d.user + d.system) / 1e6 - main) };
  };
}

const cpuTotal = (cpu: Cpu) => cpu.main + cpu.threads + cpu.ffmpeg;
const perImage = (cpu: Omit<Cpu, 'ffmpeg'>, n: number): Cpu => ({ main: cpu.main / n, threads: cpu.threads / n, ffmpeg: 0 });
const medianCpu = (cpus: Cpu[]): Cpu => ({
  main: median(cpus.map((c) => c.main)),
  threads: median(cpus.map((c) => c.threads)),
  ffmpeg: median(cpus.map((c) => c.ffmpeg)),
});

/** Runs `work` over `items` with `lanes` workers that each take the next item when free. */
async function inLanes<T, R>(items: T[], lanes: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(lanes, items.length) }, async () => {
      while (next < items.length) {
        const index = next++;
        results[index] = await work(items[index]!, index);
      }
    }),
  );
  return results;
}

function expectOk(outcome: MediaOutcome, what: string): asserts outcome is Extract<MediaOutcome, { ok: true }> {
  if (!outcome.ok) throw new Error(`${what} failed: ${outcome.reason}`);
}

// ---------------------------------------------------------------------------------------------
// ffmpeg/ffprobe recorder

interface Call {
  tool: 'ffmpeg' | 'ffprobe';
  args: string[];
  /** epoch ms */
  start: number;
  end: number;
  /** CPU seconds of ffmpeg/ffprobe itself */
  cpu: number;
}

/**
 * FFMPEG_PATH / FFPROBE_PATH point at a /bin/sh script that records argv (NUL-separated), start
 * and end (date +%s%N) and its child's CPU time (`times`), then exits with ffmpeg's code. Worker
 * threads copy process.env when they start, so this is installed before any pool thread exists.
 */
class Recorder {
  readonly bin: { ffmpeg: string; ffprobe: string };
  private readonly log: string;
  private readonly saved = { ffmpeg: process.env.FFMPEG_PATH, ffprobe: process.env.FFPROBE_PATH };

  private readonly dir: string;
  private constructor(dir: string) {
    this.dir = dir;
    this.bin = { ffmpeg: path.join(dir, 'ffmpeg'), ffprobe: path.join(dir, 'ffprobe') };
    this.log = path.join(dir, 'calls.log');
  }

  static async install(dir: string): Promise<Recorder> {
    await fs.mkdir(dir, { recursive: true });
    const recorder = new Recorder(dir);
    for (const tool of ['ffmpeg', 'ffprobe'] as const) {
      const real = (tool === 'ffmpeg' ? process.env.FFMPEG_PATH : process.env.FFPROBE_PATH) || (await which(tool));
      if (/'/.test(real + dir)) throw new Error(`no quotes in paths, please: ${real}, ${dir}`);
      const script = [
        '#!/bin/sh',
        `d='${dir}'`,
        's=$(date +%s%N)',
        'k="$$-$s"',
        `printf '%s\\0' "$@" > "$d/$k.args"`,
        `'${real}' "$@"`,
        'rc=$?',
        'e=$(date +%s%N)',
        'times > "$d/$k.times"',
        `echo "${tool} $k $s $e $rc" >> "$d/calls.log"`,
        'exit $rc',
        '',
      ].join('\n');
      await fs.writeFile(recorder.bin[tool], script, { mode: 0o755 });
    }
    await fs.writeFile(recorder.log, '');
    process.env.FFMPEG_PATH = recorder.bin.ffmpeg;
    process.env.FFPROBE_PATH = recorder.bin.ffprobe;
    return recorder;
  }

  restore(): void {
    for (const [key, value] of [['FFMPEG_PATH', this.saved.ffmpeg], ['FFPROBE_PATH', this.saved.ffprobe]] as const) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }

  async mark(): Promise<number> {
    return (await fs.stat(this.log)).size;
  }

  async callsSince(mark: number): Promise<Call[]> {
    const text = (await fs.readFile(this.log, 'utf8')).slice(mark);
    const calls: Call[] = [];
    for (const line of text.split('\n')) {
      const [tool, key, s, e] = line.trim().split(' ');
      if (!tool || !key || !s || !e) continue;
      const args = (await fs.readFile(path.join(this.dir, `${key}.args`), 'utf8')).split('\0');
      args.pop(); // after the last NUL
      // Two lines: the shell's own user/sys, then its children's (ffmpeg's).
      const child = (await fs.readFile(path.join(this.dir, `${key}.times`), 'utf8')).trim().split('\n')[1] ?? '';
      const cpu = [...child.matchAll(/(\d+)m([\d.]+)s/g)].reduce((sum, m) => sum + Number(m[1]) * 60 + Number(m[2]), 0);
      calls.push({ tool: tool as Call['tool'], args, start: Number(s) / 1e6, end: Number(e) / 1e6, cpu });
    }
    return calls;
  }
}

async function which(tool: string): Promise<string> {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const candidate = path.join(dir || '.', tool);
    try {
      await fs.access(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  throw new Error(`${tool} not found on PATH`);
}

/** fluent-ffmpeg runs `ffmpeg -formats` and `ffmpeg -encoders` once per module instance (per pool thread). */
const CAPABILITY_PROBE = 'ffmpeg -formats/-encoders';

function stepOf(call: Call): string {
  if (call.tool === 'ffprobe') return path.basename(call.args.at(-1) ?? '') === 'video.mp4' ? 'ffprobe mp4' : 'ffprobe input';
  if (call.args.includes('libx264')) return 'ffmpeg mp4';
  if (call.args.includes('-frames:v')) return 'ffmpeg poster frame';
  if (call.args.length === 1 && /^-(formats|encoders|codecs|filters)$/.test(call.args[0]!)) return CAPABILITY_PROBE;
  return `ffmpeg ${call.args.slice(0, 3).join(' ')}`;
}

const stepsOf = (calls: Call[]): VideoStep[] => calls.map((c) => ({ step: stepOf(c), wall: (c.end - c.start) / 1000, cpu: c.cpu }));

// ---------------------------------------------------------------------------------------------
// The server

interface LogEntry {
  level: number;
  time: number;
  msg?: string;
  kind?: string;
  upload?: string;
  ms?: number;
}

interface PoolSpan {
  kind: MediaTask['kind'];
  upload: string;
  start: number;
  end: number;
}

interface BenchServer {
  server: RunningServer;
  config: Config;
  /** The job slots of the runner now running. */
  jobSlots: number;
  logs: LogEntry[];
  poolSpans: PoolSpan[];
  /** Only when started with `ownRunner`: stops the running runner, starts one with `slots` slots. */
  useSlots(slots: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * The real server in this process, through `startServer` (what server/main/server.ts runs). Its logger
 * keeps the JSON lines in memory (job timings come from the runner's `job done` lines; errors are
 * echoed to stderr), and its pool's `run` is wrapped to record when each task ran. No source file
 * is touched.
 */
async function startBenchServer(environment: TestEnvironment, ownRunner: boolean): Promise<BenchServer> {
  const logs: LogEntry[] = [];
  const log = pino(
    { level: 'info', base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.epochTime },
    {
      write: (line: string) => {
        const entry = JSON.parse(line) as LogEntry;
        logs.push(entry);
        if (entry.level >= 50) process.stderr.write(`server: ${line}`);
      },
    },
  );
  const config = environment.config(ownRunner ? { RUN_JOBS: 'false' } : {});
  const server = await startServer(config, log);
  const pool = server.services.pool;
  const run = pool.run.bind(pool);
  const poolSpans: PoolSpan[] = [];
  // processMedia calls `pool.run(...)` on this very object for every job.
  pool.run = async (task, options) => {
    const start = Date.now();
    try {
      return await run(task, options);
    } finally {
      poolSpans.push({ kind: task.kind, upload: uploadOfWorkDir(task.outputDir), start, end: Date.now() });
    }
  };
  let runner: JobRunner | undefined;
  const bench: BenchServer = {
    server,
    config,
    jobSlots: config.workerThreads,
    logs,
    poolSpans,
    useSlots: async (slots) => {
      if (!ownRunner) throw new Error('the server runs its own job runner');
      if (runner && bench.jobSlots === slots) return;
      await runner?.stop();
      // The server's own runner and handlers (what startServer starts), with `slots` job slots;
      // only createJobRunner's concurrency reads config.workerThreads, the pool is unchanged.
      const services = server.services;
      runner = createJobRunner({ ...services, context: { ...services.context, config: { ...config, workerThreads: slots } } });
      await runner.start();
      bench.jobSlots = slots;
    },
    close: async () => {
      await runner?.stop();
      await server.close();
    },
  };
  return bench;
}

/** ∫ min(tasks in flight, threads) dt over [from, to], divided by threads × (to − from). */
function busyShare(spans: Array<{ start: number; end: number }>, threads: number, from: number, to: number): number {
  const events = spans.flatMap((s) => [
    { at: Math.max(from, s.start), d: 1 },
    { at: Math.min(to, s.end), d: -1 },
  ]);
  events.sort((a, b) => a.at - b.at || a.d - b.d);
  let inFlight = 0;
  let last = from;
  let busy = 0;
  for (const e of events) {
    busy += Math.min(inFlight, threads) * (e.at - last);
    inFlight += e.d;
    last = e.at;
  }
  return busy / (threads * (to - from));
}

/**
 * processMedia's outputs go to `mkdtemp(<tmp>/media-<id>-)/outputs`: the id sits between the
 * prefix and 6 random characters.
 */
function uploadOfWorkDir(outputDir: string): string {
  const base = path.basename(path.dirname(outputDir));
  return base.startsWith('media-') ? base.slice('media-'.length, -7) : '';
}

interface JobSpan {
  kind: string;
  upload: string;
  start: number;
  end: number;
}

function jobSpans(logs: LogEntry[], from: number): JobSpan[] {
  return logs
    .slice(from)
    .filter((e) => e.msg === 'job done' && typeof e.ms === 'number' && typeof e.upload === 'string')
    .map((e) => ({ kind: String(e.kind), upload: e.upload!, start: e.time - e.ms!, end: e.time }));
}

const settledStates = new Set(['ready', 'rejected', 'infected', 'failed', 'expired', 'deleted']);

/** Polls the database (in this process, one query instead of 20 status requests) until every upload has settled. */
async function waitSettled(bench: BenchServer, ids: string[], timeoutMs: number): Promise<void> {
  const db = bench.server.services.database.db;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = await db.selectFrom('uploads').select(['id', 'status']).where('id', 'in', ids).execute();
    if (rows.length === ids.length && rows.every((r) => settledStates.has(r.status))) return;
    if (Date.now() > deadline) throw new Error(`uploads not settled after ${timeoutMs} ms: ${rows.map((r) => r.status).join(', ')}`);
    await sleep(100);
  }
}

/** The status API's answer for each upload; anything but `ready` is an error. */
async function readyStatuses(bench: BenchServer, ids: string[]): Promise<UploadStatusBody[]> {
  const statuses = await Promise.all(ids.map((id) => fetchStatus(bench.server.url, id)));
  for (const s of statuses) {
    if (s.status !== 'ready' || !s.finishedAt || !s.readyAt) {
      throw new Error(`upload ${s.id} ended ${s.status}${s.reason ? ` (${s.reason})` : ''}: ${JSON.stringify(s.jobs)}`);
    }
  }
  return statuses;
}

async function uploadAll(bench: BenchServer, buffers: Buffer[], name: (i: number) => string, filetype: string): Promise<string[]> {
  const urls = await Promise.all(buffers.map((data, i) => tusUpload(bench.server.url, data, { filename: name(i), filetype })));
  return urls.map((u) => uploadIdOf(u.url));
}

/** Uploads `threads` small images and waits for them: every pool thread started, JIT warm. */
async function warmServer(bench: BenchServer, image: Buffer): Promise<void> {
  const ids = await uploadAll(bench, Array.from({ length: bench.config.workerThreads }, () => image), (i) => `warm-${i}.jpg`, 'image/jpeg');
  await waitSettled(bench, ids, 120_000);
  await readyStatuses(bench, ids);
}

// ---------------------------------------------------------------------------------------------
// Images

/** The three outputs the way imageJob makes them (decode once, encode three times), with its presets, without its checks. */
async function bareSharp(input: string, outputDir: string): Promise<void> {
  const { autoOrient } = await sharp(input).metadata();
  const { data, info } = await sharp(input, { failOn: 'truncated', pages: 1, autoOrient: true })
    .resize({ ...pictureBox(autoOrient), fit: 'inside', withoutEnlargement: true })
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  const pixels = () => sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } });
  await Promise.all([
    pixels().flatten({ background: JPEG_BACKGROUND }).jpeg(JPEG_RESIZED).toFile(path.join(outputDir, 'resized.jpg')),
    pixels()
      .resize({ ...THUMBNAIL_BOX, fit: 'inside', withoutEnlargement: true })
      .flatten({ background: JPEG_BACKGROUND })
      .jpeg(JPEG_THUMBNAIL)
      .toFile(path.join(outputDir, 'thumbnail.jpg')),
    pixels().webp(WEBP).toFile(path.join(outputDir, 'image.webp')),
  ]);
}

interface ImageRun {
  imagesPerSecond: number;
  cpu: Cpu;
  taskMs: number[];
}

async function freshDirs(root: string, count: number): Promise<string[]> {
  await fs.rm(root, { recursive: true, force: true });
  const dirs = Array.from({ length: count }, (_, i) => path.join(root, String(i)));
  await Promise.all(dirs.map((d) => fs.mkdir(d, { recursive: true })));
  return dirs;
}

/** Lanes over `files`, timed from the first task to the last; outputs go to fresh dirs, removed after. */
async function runLanes(files: string[], outRoot: string, lanes: number, task: (input: string, outputDir: string) => Promise<void>): Promise<ImageRun> {
  const dirs = await freshDirs(outRoot, files.length);
  const meter = cpuMeter();
  const t0 = performance.now();
  const taskMs = await inLanes(files, lanes, async (input, i) => {
    const s = performance.now();
    await task(input, dirs[i]!);
    return performance.now() - s;
  });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = meter();
  await fs.rm(outRoot, { recursive: true, force: true });
  return { imagesPerSecond: files.length / seconds, cpu: perImage(cpu, files.length), taskMs };
}

async function imageJobOnPool(pool: MediaPool, input: string, outputDir: string, maxPixels: number): Promise<void> {
  const outcome = await pool.run({ kind: 'image', input, outputDir, timeoutMs: 120_000, maxPixels });
  expectOk(outcome, `imageJob on ${input}`);
  if (outcome.outputs.length !== 3) throw new Error(`imageJob made ${outcome.outputs.length} outputs`);
}

/** One image's timings: the per-image fields of ImageBreakdown before taking medians. */
type PerImage = Pick<ImageBreakdown, 'inspectMs' | 'slotWaitMs' | 'beforePoolMs' | 'poolMs' | 'afterPoolMs' | 'latencyMs'>;

interface PipelineImageRun extends ImageRun {
  jobsCpu: Cpu;
  perImage: PerImage[];
  poolBusyShare: number;
  firstInspectClaimMs: number;
  firstPoolStartMs: number;
  uploadSpreadMs: number;
  tailMs: number;
}

async function runPipelineImages(bench: BenchServer, buffers: Buffer[], round: number): Promise<PipelineImageRun> {
  const logFrom = bench.logs.length;
  const spanFrom = bench.poolSpans.length;
  const meter = cpuMeter();
  const ids = await uploadAll(bench, buffers, (i) => `IMG_${round}_${i}.jpg`, 'image/jpeg');
  const jobsMeter = cpuMeter();
  await waitSettled(bench, ids, 600_000);
  const cpu = meter();
  const jobsCpu = jobsMeter();
  const statuses = await readyStatuses(bench, ids);
  const finished = statuses.map((s) => msOf(s.finishedAt));
  const ready = statuses.map((s) => msOf(s.readyAt));
  const firstFinished = Math.min(...finished);
  const window = Math.max(...ready) - firstFinished;

  const jobs = jobSpans(bench.logs, logFrom);
  const spans = bench.poolSpans.slice(spanFrom).filter((s) => ids.includes(s.upload));
  const timings = statuses.map((s, i) => {
    const inspect = jobs.find((j) => j.upload === s.id && j.kind === 'inspect');
    const image = jobs.find((j) => j.upload === s.id && j.kind === 'image');
    const task = spans.find((p) => p.upload === s.id);
    if (!inspect || !image || !task) throw new Error(`no job timings for ${s.id}`);
    return { finished: finished[i]!, inspect, image, task, latencyMs: ready[i]! - finished[i]! };
  });
  const first = timings.find((t) => t.finished === firstFinished)!;
  return {
    imagesPerSecond: buffers.length / (window / 1000),
    cpu: perImage(cpu, buffers.length),
    jobsCpu: perImage(jobsCpu, buffers.length),
    taskMs: spans.map((p) => p.end - p.start),
    perImage: timings.map((t) => ({
      inspectMs: t.inspect.end - t.inspect.start,
      slotWaitMs: t.image.start - t.inspect.end,
      beforePoolMs: t.task.start - t.image.start,
      poolMs: t.task.end - t.task.start,
      afterPoolMs: t.image.end - t.task.end,
      latencyMs: t.latencyMs,
    })),
    poolBusyShare: busyShare(spans, bench.config.workerThreads, firstFinished, firstFinished + window),
    firstInspectClaimMs: first.inspect.start - first.finished,
    firstPoolStartMs: Math.min(...spans.map((p) => p.start)) - firstFinished,
    uploadSpreadMs: Math.max(...finished) - firstFinished,
    tailMs: Math.max(...ready) - Math.max(...spans.map((p) => p.end)),
  };
}

/** Summary of one pipeline variant over all rounds. */
function summarise(jobSlots: number, runs: PipelineImageRun[], baseline: ImageRun[]): PipelineResult {
  const all = runs.flatMap((r) => r.perImage);
  const pick = (key: keyof PerImage) => median(all.map((p) => p[key]));
  const overRounds = (key: 'poolBusyShare' | 'firstInspectClaimMs' | 'firstPoolStartMs' | 'uploadSpreadMs' | 'tailMs') => median(runs.map((r) => r[key]));
  const throughput = spread(runs.map((r) => r.imagesPerSecond));
  return {
    jobSlots,
    throughput,
    ratio: throughput.median / median(baseline.map((r) => r.imagesPerSecond)),
    roundRatios: runs.map((r, i) => r.imagesPerSecond / baseline[i]!.imagesPerSecond),
    cpuPerImage: medianCpu(runs.map((r) => r.cpu)),
    jobsCpuPerImage: medianCpu(runs.map((r) => r.jobsCpu)),
    breakdown: {
      inspectMs: pick('inspectMs'),
      slotWaitMs: pick('slotWaitMs'),
      beforePoolMs: pick('beforePoolMs'),
      poolMs: pick('poolMs'),
      afterPoolMs: pick('afterPoolMs'),
      latencyMs: pick('latencyMs'),
      poolBusyShare: overRounds('poolBusyShare'),
      firstInspectClaimMs: overRounds('firstInspectClaimMs'),
      firstPoolStartMs: overRounds('firstPoolStartMs'),
      uploadSpreadMs: overRounds('uploadSpreadMs'),
      tailMs: overRounds('tailMs'),
    },
  };
}

/**
 * `slots`: the pipeline variants, run in this order every round (undefined: the server's own
 * runner). Odd rounds run the baseline first, even rounds last.
 */
async function imageSection(
  root: string,
  bench: BenchServer,
  count: number,
  rounds: number,
  slots: Array<number | undefined>,
  withSharpLoop: boolean,
): Promise<ImageResult> {
  const threads = bench.config.workerThreads;
  const maxPixels = bench.config.maxImagePixels;
  const samples = path.join(root, 'images');
  await fs.mkdir(samples, { recursive: true });
  console.log(`\n## Images: ${count} × 4000x3000 JPEG, ${rounds} round(s)`);
  const source = await cameraJpeg(samples, 4000, 3000, 'source.jpg');
  const files: string[] = [];
  for (let i = 0; i < count; i++) {
    const file = path.join(samples, `camera-${i}.jpg`);
    await fs.copyFile(source, file);
    files.push(file);
  }
  const buffers = await Promise.all(files.map((f) => fs.readFile(f)));
  const warmFile = await cameraJpeg(samples, 800, 600, 'warm.jpg');
  const warmBuffer = await fs.readFile(warmFile);
  console.log(`  sample: ${fmt(buffers[0]!.length / 1e6, 1)} MB each (the same bytes in ${count} files)`);

  const pool = createMediaPool(threads);
  try {
    // A cold thread: the first task on a fresh pool (worker start, sharp, imageJob) vs warm ones.
    const coldDir = path.join(root, 'cold');
    await fs.mkdir(coldDir, { recursive: true });
    const c0 = performance.now();
    await imageJobOnPool(pool, files[0]!, coldDir, maxPixels);
    const coldTaskMs = performance.now() - c0;
    await fs.rm(coldDir, { recursive: true, force: true });
    const warmPool = async () => {
      const dirs = await freshDirs(path.join(root, 'warm-out'), threads);
      await Promise.all(dirs.map((d) => imageJobOnPool(pool, warmFile, d, maxPixels)));
    };

    const baselineRuns: ImageRun[] = [];
    const pipelineRuns: PipelineImageRun[][] = slots.map(() => []);
    const sharpRuns: ImageRun[] = [];
    const slotsOf = (i: number) => slots[i] ?? bench.config.workerThreads;
    for (let round = 1; round <= rounds; round++) {
      const line: string[] = [];
      const runBaseline = async () => {
        await warmPool();
        const run = await runLanes(files, path.join(root, 'out'), threads, (input, dir) => imageJobOnPool(pool, input, dir, maxPixels));
        baselineRuns.push(run);
        line.push(`baseline ${fmt(run.imagesPerSecond)}/s`);
      };
      if (round % 2 === 1) await runBaseline();
      for (let v = 0; v < slots.length; v++) {
        const wanted = slots[v];
        if (wanted !== undefined) await bench.useSlots(wanted);
        await warmServer(bench, warmBuffer);
        const run = await runPipelineImages(bench, buffers, round);
        pipelineRuns[v]!.push(run);
        line.push(`pipeline${slots.length > 1 ? ` ${slotsOf(v)} slots` : ''} ${fmt(run.imagesPerSecond)}/s (pool busy ${pct(run.poolBusyShare)})`);
      }
      if (round % 2 === 0) await runBaseline();
      if (withSharpLoop) {
        const run = await runLanes(files, path.join(root, 'out'), threads, bareSharp);
        sharpRuns.push(run);
        line.push(`sharp loop ${fmt(run.imagesPerSecond)}/s`);
      }
      const base = baselineRuns.at(-1)!.imagesPerSecond;
      console.log(`  round ${round}: ${line.join(', ')}  → ${pipelineRuns.map((r) => `${fmt(r.at(-1)!.imagesPerSecond / base)}×`).join(' / ')}`);
    }

    const pipelines = pipelineRuns.map((runs, v) => summarise(slotsOf(v), runs, baselineRuns));
    return {
      count,
      rounds,
      threads,
      baseline: spread(baselineRuns.map((r) => r.imagesPerSecond)),
      baselineCpu: medianCpu(baselineRuns.map((r) => r.cpu)),
      baselineTaskMs: median(baselineRuns.flatMap((r) => r.taskMs)),
      pipelines,
      sharpLoop:
        sharpRuns.length > 0 ? { throughput: spread(sharpRuns.map((r) => r.imagesPerSecond)), cpuPerImage: medianCpu(sharpRuns.map((r) => r.cpu)) } : undefined,
      ratio: pipelines[0]!.ratio,
      target: IMAGE_TARGET,
      met: pipelines[0]!.ratio >= IMAGE_TARGET,
      coldTaskMs,
    };
  } finally {
    await pool.close();
    await fs.rm(samples, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Video

function runRecorded(bin: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < 20_000) stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${bin} ${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`))));
  });
}

async function videoSection(root: string, bench: BenchServer, recorder: Recorder): Promise<VideoResult> {
  const dir = path.join(root, 'video');
  await fs.mkdir(dir, { recursive: true });
  console.log('\n## Video: 30 s 1920x1080 H.264 + AAC (testsrc2)');
  const clip = await benchmarkClip(dir);
  const clipBytes = (await fs.stat(clip)).size;
  console.log(`  clip: ${fmt(clipBytes / 1e6, 1)} MB`);

  // 1. pipeline: warm the server's threads (small images), upload the clip, finishedAt → readyAt.
  await warmServer(bench, await fs.readFile(await cameraJpeg(dir, 800, 600, 'warm.jpg')));
  const clipBuffer = await fs.readFile(clip);
  const logFrom = bench.logs.length;
  const spanFrom = bench.poolSpans.length;
  const mark = await recorder.mark();
  const meter = cpuMeter();
  const u0 = performance.now();
  const [id] = await uploadAll(bench, [clipBuffer], () => 'bench-1080p-30s.mp4', 'video/mp4');
  const uploadSeconds = (performance.now() - u0) / 1000;
  await waitSettled(bench, [id!], 1_800_000);
  const pipelineOwn = meter();
  const [status] = await readyStatuses(bench, [id!]);
  const jobs = jobSpans(bench.logs, logFrom);
  const inspect = jobs.find((j) => j.upload === id && j.kind === 'inspect');
  const video = jobs.find((j) => j.upload === id && j.kind === 'video');
  const task = bench.poolSpans.slice(spanFrom).find((s) => s.upload === id);
  if (!inspect || !video || !task) throw new Error('no job timings for the video upload');
  const calls = (await recorder.callsSince(mark)).filter((c) => c.start >= task.start && c.end <= task.end);
  const jobCalls = calls.filter((c) => stepOf(c) !== CAPABILITY_PROBE);
  if (!jobCalls.some((c) => stepOf(c) === 'ffmpeg mp4')) throw new Error('the recorder saw no mp4 encode');
  const finishedAt = msOf(status!.finishedAt);
  const pipeline: VideoResult['pipeline'] = {
    seconds: (msOf(status!.readyAt) - finishedAt) / 1000,
    cpu: { ...pipelineOwn, ffmpeg: calls.reduce((s, c) => s + c.cpu, 0) },
    steps: stepsOf(calls),
    uploadSeconds,
    inspectClaimSeconds: (inspect.start - finishedAt) / 1000,
    inspectSeconds: (inspect.end - inspect.start) / 1000,
    slotWaitSeconds: (video.start - inspect.end) / 1000,
    beforePoolSeconds: (task.start - video.start) / 1000,
    poolSeconds: (task.end - task.start) / 1000,
    poolToFirstCallSeconds: (Math.min(...calls.map((c) => c.start)) - task.start) / 1000,
    afterPoolSeconds: (video.end - task.end) / 1000,
  };
  console.log(`  pipeline finishedAt → readyAt       ${fmt(pipeline.seconds, 1)} s   (the upload itself took ${fmt(uploadSeconds, 1)} s, not counted)`);

  // 2. bare: the job's command lines, replayed (input: the clip itself instead of the job's temp
  //    copy; outputs: a dir of our own), then the same sharp conversions for poster and thumbnail.
  const workDir = path.dirname(jobCalls.find((c) => stepOf(c) === 'ffmpeg mp4')!.args.find((a) => a.includes(`media-${id}-`))!.replace(/^file:/, ''));
  const jobDir = workDir.endsWith('/outputs') ? path.dirname(workDir) : workDir;
  const bareOut = path.join(dir, 'bare-out');
  await fs.mkdir(bareOut, { recursive: true });
  const swap = (arg: string) => arg.split(path.join(jobDir, 'original')).join(clip).split(path.join(jobDir, 'outputs')).join(bareOut);
  const bareMark = await recorder.mark();
  const bareMeter = cpuMeter();
  const b0 = performance.now();
  for (const call of jobCalls) await runRecorded(recorder.bin[call.tool], call.args.map(swap));
  const frame = path.join(bareOut, 'poster-frame.png');
  await sharp(frame).jpeg(JPEG_RESIZED).toFile(path.join(bareOut, 'poster.jpg'));
  await sharp(frame).resize({ ...THUMBNAIL_BOX, fit: 'inside', withoutEnlargement: true }).jpeg(JPEG_THUMBNAIL).toFile(path.join(bareOut, 'thumbnail.jpg'));
  const bareSeconds = (performance.now() - b0) / 1000;
  const bareOwn = bareMeter();
  const bareCalls = await recorder.callsSince(bareMark);
  const bare = { seconds: bareSeconds, cpu: { ...bareOwn, ffmpeg: bareCalls.reduce((s, c) => s + c.cpu, 0) }, steps: stepsOf(bareCalls) };
  console.log(`  bare     the same ffmpeg commands    ${fmt(bareSeconds, 1)} s`);
  await fs.rm(dir, { recursive: true, force: true });

  const ratio = pipeline.seconds / bare.seconds;
  return {
    clipBytes,
    bare,
    pipeline,
    ratio,
    cpuRatio: cpuTotal(pipeline.cpu) / cpuTotal(bare.cpu),
    target: VIDEO_TARGET,
    met: ratio <= VIDEO_TARGET,
    mp4Command: jobCalls.find((c) => stepOf(c) === 'ffmpeg mp4')!.args,
  };
}

// ---------------------------------------------------------------------------------------------
// Report

const cpuCell = (cpu: Cpu) => `${fmt(cpuTotal(cpu), 3)} (${fmt(cpu.main, 3)} · ${fmt(cpu.threads, 3)})`;

function report(result: MediaBenchResult): void {
  const { images, video } = result;
  if (images) {
    console.log(`\n## Images — ${images.count} × 4000x3000 JPEG, ${images.threads} worker threads, median of ${images.rounds} round(s)\n`);
    console.log('| side | images/s median (min–max) | vs baseline: median · per round | CPU s/image (main · threads) | of which jobs | CPU-bound estimate |');
    console.log('|---|---:|---:|---:|---:|---:|');
    const baseCpu = cpuTotal(images.baselineCpu);
    console.log(
      `| baseline: imageJob on createMediaPool, ${images.threads} lanes | ${fmt(images.baseline.median)} (${fmt(images.baseline.min)}–${fmt(images.baseline.max)}) | 1.00× | ` +
        `${cpuCell(images.baselineCpu)} | — | 1.00× |`,
    );
    if (images.sharpLoop) {
      const s = images.sharpLoop;
      console.log(
        `| bare sharp loop on the main thread, ${images.threads} at a time | ${fmt(s.throughput.median)} (${fmt(s.throughput.min)}–${fmt(s.throughput.max)}) | ` +
          `${fmt(s.throughput.median / images.baseline.median)}× | ${cpuCell(s.cpuPerImage)} | — | ${fmt(baseCpu / cpuTotal(s.cpuPerImage))}× |`,
      );
    }
    for (const p of images.pipelines) {
      console.log(
        `| pipeline, ${p.jobSlots} job slots: ${images.count} / (last readyAt − first finishedAt) | ${fmt(p.throughput.median)} (${fmt(p.throughput.min)}–${fmt(p.throughput.max)}) | ` +
          `**${fmt(p.ratio)}×** · ${p.roundRatios.map((r) => fmt(r)).join(' ')} | ${cpuCell(p.cpuPerImage)} | ${cpuCell(p.jobsCpuPerImage)} | ` +
          `${fmt(baseCpu / cpuTotal(p.jobsCpuPerImage))}× |`,
      );
    }
    console.log(
      '\nCPU s/image: the whole run (for the pipeline: the uploads too, tus client included: same process); "of which jobs": from the moment ' +
        'every upload had returned until all were ready. CPU-bound estimate = baseline CPU per image / the jobs\' CPU per image: the ratio ' +
        'to expect once processing saturates every core.',
    );
    for (const p of images.pipelines) {
      const b = p.breakdown;
      console.log(`\npipeline, ${p.jobSlots} job slots, per image (medians, ms):`);
      console.log(
        `  inspect job ${fmt(b.inspectMs, 0)} · wait for a job slot ${fmt(b.slotWaitMs, 0)} · before the pool (find, mkdtemp, copy original) ${fmt(b.beforePoolMs, 0)} · ` +
          `pool.run ${fmt(b.poolMs, 0)}${p.jobSlots > images.threads ? ' (incl. waiting in the pool\'s queue)' : ''} (baseline task: ${fmt(images.baselineTaskMs, 0)}) · ` +
          `after the pool (store outputs, rm, commit) ${fmt(b.afterPoolMs, 0)} · finishedAt → readyAt ${fmt(b.latencyMs, 0)}`,
      );
      console.log(
        `  per round: pool threads busy ${pct(b.poolBusyShare)} of the window · first finishedAt → its inspect starts ${fmt(b.firstInspectClaimMs, 0)} · ` +
          `→ first pool task ${fmt(b.firstPoolStartMs, 0)} · last pool task → last readyAt ${fmt(b.tailMs, 0)} · the uploads finished over ${fmt(b.uploadSpreadMs, 0)}`,
      );
    }
    console.log(`\na cold pool thread: first task ${fmt(images.coldTaskMs, 0)} ms vs ${fmt(images.baselineTaskMs, 0)} ms warm (a pool starts its threads with its first task)`);
  }
  if (video) {
    const p = video.pipeline;
    console.log(`\n## Video — 30 s 1920x1080 clip (${fmt(video.clipBytes / 1e6, 1)} MB), one run each\n`);
    console.log('| side | seconds | CPU s: ffmpeg + main · threads | vs bare (wall · CPU) |');
    console.log('|---|---:|---:|---:|');
    const row = (name: string, s: { seconds: number; cpu: Cpu }) =>
      console.log(
        `| ${name} | ${fmt(s.seconds, 1)} | ${fmt(s.cpu.ffmpeg, 1)} + ${fmt(s.cpu.main, 2)} · ${fmt(s.cpu.threads, 2)} | ` +
          `${fmt(s.seconds / video.bare.seconds)}× · ${fmt(cpuTotal(s.cpu) / cpuTotal(video.bare.cpu))}× |`,
      );
    row('bare: the job\'s ffmpeg commands + sharp poster', video.bare);
    row('pipeline: finishedAt → readyAt', p);
    console.log('\nffmpeg/ffprobe calls (wall s / CPU s):');
    const names = [...new Set([...video.bare.steps, ...p.steps].map((s) => s.step))];
    for (const name of names) {
      const cell = (steps: VideoStep[]) => {
        const s = steps.filter((x) => x.step === name);
        return s.length === 0 ? '—' : s.map((x) => `${fmt(x.wall, 2)} / ${fmt(x.cpu, 2)}`).join(' + ');
      };
      console.log(`  ${name.padEnd(26)} bare ${cell(video.bare.steps).padEnd(16)} pipeline ${cell(p.steps)}`);
    }
    console.log(
      `pipeline: finishedAt → inspect starts ${fmt(p.inspectClaimSeconds)} s · inspect ${fmt(p.inspectSeconds)} s · wait for a job slot ${fmt(p.slotWaitSeconds)} s · ` +
        `before the pool (copy original) ${fmt(p.beforePoolSeconds)} s · pool task ${fmt(p.poolSeconds, 1)} s (start → first ffprobe ${fmt(p.poolToFirstCallSeconds)} s) · ` +
        `after the pool (store outputs, commit) ${fmt(p.afterPoolSeconds)} s`,
    );
    console.log(`mp4 command (replayed by the bare side): ffmpeg ${video.mp4Command.map((a) => (/[\s'"(),]/.test(a) ? `"${a}"` : a)).join(' ')}`);
  }
  console.log('\n## Targets');
  if (images) {
    const p = images.pipelines[0]!;
    console.log(
      `  ${images.met ? 'met   ' : 'MISSED'}  images: pipeline (${p.jobSlots} job slots) ${fmt(p.throughput.median)}/s vs baseline ${fmt(images.baseline.median)}/s = ` +
        `${fmt(images.ratio)}× (target ≥ ${images.target}×; per round ${fmt(Math.min(...p.roundRatios))}–${fmt(Math.max(...p.roundRatios))}×; ` +
        `CPU-bound estimate ${fmt(cpuTotal(images.baselineCpu) / cpuTotal(p.jobsCpuPerImage))}×)`,
    );
  }
  if (video) {
    console.log(
      `  ${video.met ? 'met   ' : 'MISSED'}  video: pipeline ${fmt(video.pipeline.seconds, 1)} s vs bare ${fmt(video.bare.seconds, 1)} s = ${fmt(video.ratio)}× ` +
        `(target ≤ ${video.target}×; CPU ${fmt(video.cpuRatio)}×)`,
    );
  }
  console.log(`\ntotal ${fmt(result.seconds, 0)} s`);
}

// ---------------------------------------------------------------------------------------------

/** `2,4` → [2, 4]; unset → [undefined] (the server's own runner). */
function slotList(raw: string | undefined): Array<number | undefined> {
  if (raw === undefined || raw.trim() === '') return [undefined];
  return raw.split(',').map((part) => {
    const n = Number(part.trim());
    if (!Number.isInteger(n) || n < 1) throw new Error(`MEDIA_BENCH_JOB_SLOTS: "${raw}" is not a list of whole numbers ≥ 1`);
    return n;
  });
}

export async function runMediaBench(): Promise<MediaBenchResult> {
  const started = performance.now();
  const count = intEnv('MEDIA_BENCH_IMAGES', 20, 1);
  const rounds = intEnv('MEDIA_BENCH_ROUNDS', 5, 0);
  const withVideo = intEnv('MEDIA_BENCH_VIDEO', 1, 0) > 0;
  const withSharpLoop = intEnv('MEDIA_BENCH_SHARP_LOOP', 0, 0) > 0;
  const slots = slotList(process.env.MEDIA_BENCH_JOB_SLOTS);
  const withPostgres = intEnv('MEDIA_BENCH_POSTGRES', 0, 0) > 0;

  const root = await reachableTempDir('media-bench-');
  let recorder: Recorder | undefined;
  let environment: TestEnvironment | undefined;
  let bench: BenchServer | undefined;
  let database: { url: string; drop: () => Promise<void> } | undefined;
  const onSignal = () => {
    void Promise.allSettled([fs.rm(root, { recursive: true, force: true }), environment?.destroy(), database?.drop()]).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  try {
    recorder = await Recorder.install(path.join(root, 'recorder'));
    if (withPostgres) database = await createTestDatabase();
    environment = await createTestEnvironment('embedded', {
      ...(database ? { DATABASE_URL: database.url } : {}),
      SCAN: 'off',
      CLAMD_SOCKET: '',
      JOB_POLL_INTERVAL: '1s', // the production default (the test environment uses 200ms)
      RATE_LIMIT_UPLOADS: '0',
      ...(process.env.WORKER_THREADS ? { WORKER_THREADS: process.env.WORKER_THREADS } : {}),
    });
    bench = await startBenchServer(environment, slots[0] !== undefined);
    if (slots[0] !== undefined) await bench.useSlots(slots[0]);
    console.log(
      `media bench — node ${process.version}, ${os.availableParallelism()} CPUs, load ${os.loadavg().map((l) => fmt(l, 1)).join(' ')}, ` +
        `WORKER_THREADS ${bench.config.workerThreads}, job slots ${slots.map((n) => n ?? bench!.config.workerThreads).join(' and ')}, sharp ${sharp.versions.sharp} / libvips ${sharp.versions.vips} ` +
        `(concurrency ${sharp.concurrency()}), UV_THREADPOOL_SIZE ${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}`,
    );
    console.log(
      `server ${bench.server.url} in this process: folder store + ${database ? `Postgres (${bench.server.services.database.describe})` : 'embedded Postgres'}, ` +
        `SCAN=off, JOB_POLL_INTERVAL 1s; temp ${root}`,
    );
    const images = rounds > 0 ? await imageSection(root, bench, count, rounds, slots, withSharpLoop) : undefined;
    if (slots[0] !== undefined) await bench.useSlots(slots[0]);
    const video = withVideo ? await videoSection(root, bench, recorder) : undefined;
    const result: MediaBenchResult = {
      threads: bench.config.workerThreads,
      images,
      video,
      seconds: (performance.now() - started) / 1000,
    };
    report(result);
    console.log(`load at the end ${os.loadavg().map((l) => fmt(l, 1)).join(' ')}`);
    return result;
  } finally {
    process.off('SIGINT', onSignal);
    await bench?.close().catch((err: unknown) => console.error('closing the server failed:', err));
    await environment?.destroy();
    await database?.drop().catch((err: unknown) => console.error('dropping the bench database failed:', err));
    recorder?.restore();
    await fs.rm(root, { recursive: true, force: true });
  }
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href;
if (invokedDirectly) {
  runMediaBench().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
