// `npm run bench:soak` (not part of `npm test` or `npm run bench`): mixed traffic for a long time
// against `npm start`'s server, sampling what could leak. Per setup, the server runs as a child
// process with its own TMPDIR; the traffic comes from this process at a steady rate:
//  - whole uploads of every allowed type (JPEG, PNG, WebP, HEIC, PDF, MP4, WebM) and a disguised
//    file (refused), through tus-js-client; half of them followed on their event stream (some of
//    those streams closed by the client early), the rest polled; then deleted;
//  - resumes (the connection dropped halfway, then HEAD and the rest), concatenations (two
//    partial uploads and a final), uploads deleted while unfinished, and uploads abandoned
//    halfway that the cleanup expires;
//  - webhooks to an app in this process that is down a quarter of the time and answers 500 to
//    one delivery in ten.
// Sampled at the start, every interval and at the end: the server's RSS and V8 heap (from its
// /metrics), its open file descriptors, its database connections (pg_stat_activity on the
// scale-out database; the embedded Postgres's client backends) and the files in its TMPDIR.
// Prints each resource at the start, after the warm-up and at the end (once the traffic stopped and
// the last jobs finished), and the least-squares slope per hour while the traffic ran, after the
// warm-up and over the second half of the run; then what was left in TMPDIR after the server stopped.
//
// Settings (environment):
//   SOAK_MINUTES=30          how long the traffic runs (per setup; the setups run at the same time)
//   SOAK_SETUP=both          `embedded`, `scaleout` (Postgres at TEST_DATABASE_URL, radosgw) or `both`
//   SOAK_SCAN=clamd          the scale-out setup's scanning: `clamd` (the test clamd) or `off`
//   SOAK_RATE=1              operations started per second, per setup
//   SOAK_WARMUP_MINUTES      samples before this are left out of the slope (default: a fifth of the run, at most 5)
//   SOAK_MEDIA=on            `off`: only PDFs (and the disguised file) are sent, no media jobs run
//   BENCH_VERBOSE=1          echo the servers' output
// Each sample also has the server's anonymous memory (/proc/<pid>/smaps_rollup) and, from a
// preload in each of its threads (memoryProbe.ts), the main thread's `external`/`arrayBuffers`
// and the piscina workers' V8 heaps and `external` summed.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import sharp from 'sharp';
import * as tus from 'tus-js-client';
import { clamdSocket, testDatabaseUrl } from '../services/env.ts';
import { openEventStream } from '../support/eventStream.ts';
import { freePort } from '../support/freePort.ts';
import { iphoneHeic } from '../support/heicSamples.ts';
import { photoPixels } from '../support/imageSamples.ts';
import { reachableTempDir } from '../support/reachableTempDir.ts';
import { pdf, png } from '../support/samples.ts';
import { createTestDatabase, testBucketSettings } from '../support/testServer.ts';
import { tusRefusal, tusUpload, uploadIdOf, waitUntilSettled } from '../support/uploads.ts';
import { h264Clip, webmClip } from '../support/videoSamples.ts';
import { startWebhookReceiver, webhookSecret, type WebhookReceiver } from '../support/webhookReceiver.ts';
import { baseEnv, fmt, MiB } from './common.ts';
import { descendantsOf } from './processTree.ts';
import { repoRoot, runBench, sleep, startServerOf, type ChildServer } from './processes.ts';

type SetupName = 'embedded' | 'scaleout';

const minutes = positiveNumber('SOAK_MINUTES', 30);
const rate = positiveNumber('SOAK_RATE', 1);
const warmupMinutes = positiveNumber('SOAK_WARMUP_MINUTES', Math.min(5, minutes / 5));
const scan = process.env.SOAK_SCAN ?? 'clamd';
const setupNames: SetupName[] = (() => {
  const raw = process.env.SOAK_SETUP ?? 'both';
  if (raw === 'both') return ['embedded', 'scaleout'];
  if (raw === 'embedded' || raw === 'scaleout') return [raw];
  throw new Error(`SOAK_SETUP: "${raw}" is not embedded, scaleout or both`);
})();
const media = process.env.SOAK_MEDIA ?? 'on';
if (media !== 'on' && media !== 'off') throw new Error(`SOAK_MEDIA: "${media}" is not on or off`);
if (scan !== 'clamd' && scan !== 'off') throw new Error(`SOAK_SCAN: "${scan}" is not clamd or off`);
/** About forty samples a run, at least 5 s apart. */
const sampleEveryMs = Math.max(5_000, (minutes * 60_000) / 40);
/** Operations under way at once, at most; an operation due while this many run is counted as skipped. */
const maxInFlight = 24;

function positiveNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}: "${raw}" is not a positive number`);
  return value;
}

interface Sample {
  atMinutes: number;
  rssBytes: number;
  heapBytes: number;
  fds: number;
  dbConnections: number;
  tempFiles: number;
  tempBytes: number;
  anonBytes: number;
  mainExternalBytes: number;
  mainArrayBuffersBytes: number;
  workers: number;
  workersHeapBytes: number;
  workersExternalBytes: number;
}

interface ThreadFigures {
  main: boolean;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

interface SampleFile {
  name: string;
  type: string;
  data: Buffer;
  /** Refused on its first bytes (a disguised file): only sent whole, and expected to get a 4xx. */
  refused?: boolean;
}

const children: ChildServer[] = [];
const cleanups: Array<() => Promise<void>> = [];

async function makeFiles(dir: string): Promise<SampleFile[]> {
  const pixels = photoPixels(1024, 768);
  const raw = { raw: { width: 1024, height: 768, channels: 3 as const } };
  const file = async (name: string, type: string, make: () => Promise<string>) => ({ name, type, data: await fs.readFile(await make()) });
  return [
    { name: 'photo.jpg', type: 'image/jpeg', data: await sharp(pixels, raw).jpeg({ quality: 85 }).toBuffer() },
    { name: 'drawing.png', type: 'image/png', data: png(640, 480) },
    { name: 'picture.webp', type: 'image/webp', data: await sharp(pixels, raw).webp().toBuffer() },
    await file('IMG_0001.heic', 'image/heic', () => iphoneHeic(dir, pixels, { width: 1024, height: 768 })),
    { name: 'document.pdf', type: 'application/pdf', data: pdf(256 * 1024) },
    await file('clip.mp4', 'video/mp4', () => h264Clip(dir, { seconds: 2, width: 320, height: 240 })),
    await file('clip.webm', 'video/webm', () => webmClip(dir)),
    // A PNG claiming to be a PDF: refused by its magic bytes.
    { name: 'disguised.pdf', type: 'application/pdf', data: png(64, 48), refused: true },
  ];
}

/** One setup's server, its traffic and its samples. */
class Soak {
  readonly name: SetupName;
  readonly server: ChildServer;
  readonly tmpDir: string;
  readonly probeDir: string;
  readonly sampled: Sample[] = [];
  readonly counts = new Map<string, number>();
  readonly failures = new Map<string, number>();
  private readonly database: pg.Client | undefined;
  private readonly databaseName: string | undefined;
  private readonly started = performance.now();

  constructor(name: SetupName, server: ChildServer, tmpDir: string, probeDir: string, database?: { client: pg.Client; name: string }) {
    this.name = name;
    this.server = server;
    this.tmpDir = tmpDir;
    this.probeDir = probeDir;
    this.database = database?.client;
    this.databaseName = database?.name;
  }

  count(what: string, into = this.counts): void {
    into.set(what, (into.get(what) ?? 0) + 1);
  }

  async sample(): Promise<Sample> {
    const pid = this.server.pid;
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const metrics = await (await fetch(`${this.server.url}/metrics`)).text();
    const temp = await folderSize(this.tmpDir);
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const threads = await this.threads();
    const main = threads.find((t) => t.main);
    const workers = threads.filter((t) => !t.main);
    const sample: Sample = {
      atMinutes: (performance.now() - this.started) / 60_000,
      rssBytes: Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]) * 1024,
      heapBytes: Number(/^nodejs_heap_size_used_bytes (\S+)/m.exec(metrics)?.[1]),
      fds: (await fs.readdir(`/proc/${pid}/fd`)).length,
      dbConnections: await this.dbConnections(),
      tempFiles: temp.files,
      tempBytes: temp.bytes,
      anonBytes: Number(/^Anonymous:\s+(\d+) kB/m.exec(rollup)?.[1]) * 1024,
      mainExternalBytes: main?.external ?? 0,
      mainArrayBuffersBytes: main?.arrayBuffers ?? 0,
      workers: workers.length,
      workersHeapBytes: workers.reduce((a, t) => a + t.heapUsed, 0),
      workersExternalBytes: workers.reduce((a, t) => a + t.external, 0),
    };
    this.sampled.push(sample);
    return sample;
  }

  /**
   * The figures each thread of the server wrote last. An idle piscina worker blocks in
   * Atomics.wait and its timer does not fire: its figures are those of its last task. (A thread
   * that crashed would be counted on; piscina keeps its threads, so none ends otherwise.)
   */
  private async threads(): Promise<ThreadFigures[]> {
    const names = await fs.readdir(this.probeDir).catch(() => []);
    const figures = await Promise.all(names.map(async (name) => JSON.parse(await fs.readFile(path.join(this.probeDir, name), 'utf8').catch(() => 'null')) as ThreadFigures | null));
    return figures.filter((f): f is ThreadFigures => f !== null);
  }

  /** Scale-out: sessions on its database (this process's sampler is on another one); embedded: the Postgres client backends under the server. */
  private async dbConnections(): Promise<number> {
    if (this.database) {
      const { rows } = await this.database.query<{ n: number }>('select count(*)::int as n from pg_stat_activity where datname = $1', [this.databaseName]);
      return rows[0]!.n;
    }
    return descendantsOf(this.server.pid).filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('[local]');
      } catch {
        return false;
      }
    }).length;
  }
}

async function folderSize(dir: string): Promise<{ files: number; bytes: number; names: string[] }> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  let bytes = 0;
  const names: string[] = [];
  for (const entry of entries) {
    const full = path.join(entry.parentPath, entry.name);
    names.push(path.relative(dir, full) + (entry.isDirectory() ? '/' : ''));
    if (entry.isFile()) bytes += (await fs.stat(full).catch(() => ({ size: 0 }))).size;
  }
  return { files: names.length, bytes, names };
}

async function startSetup(name: SetupName, root: string): Promise<Soak> {
  const tmpDir = path.join(root, name, 'tmp');
  const dataDir = path.join(root, name, 'data');
  const probeDir = path.join(root, name, 'probe');
  await fs.mkdir(probeDir, { recursive: true });
  await fs.mkdir(tmpDir, { recursive: true, mode: 0o755 });
  await fs.mkdir(dataDir, { recursive: true, mode: 0o755 });
  const port = await freePort();
  const secret = webhookSecret();
  const app = await startWebhookReceiver(secret);
  cleanups.push(() => app.stop());
  flakyApp(app);
  const env: Record<string, string> = {
    ...baseEnv(),
    TMPDIR: tmpDir,
    // Node's compile cache (server/main/compileCache.js) is kept on purpose: elsewhere, so TMPDIR shows only what the server leaves.
    NODE_COMPILE_CACHE: path.join(root, name, 'compile-cache'),
    DATA_DIR: dataDir,
    PORT: String(port),
    HOST: '127.0.0.1',
    PUBLIC_URL: `http://127.0.0.1:${port}`,
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
    SCAN: 'off',
    JOB_POLL_INTERVAL: '250ms',
    RATE_LIMIT_UPLOADS: '0',
    QUOTA_UPLOADS_IN_FLIGHT: '0',
    // Abandoned uploads expire and are cleaned up within the run.
    UPLOAD_EXPIRES_AFTER: '1m',
    CLEANUP_INTERVAL: '30s',
    WEBHOOK_URL: app.url,
    WEBHOOK_SECRET: secret,
    WEBHOOK_TIMEOUT: '2s',
    WEBHOOK_RETRY_DELAY: '1s',
    WEBHOOK_MAX_ATTEMPTS: '4',
    EVENTS_HEARTBEAT: '5s',
    SOAK_PROBE_DIR: probeDir,
  };
  let database: { client: pg.Client; name: string } | undefined;
  if (name === 'scaleout') {
    const created = await createTestDatabase();
    cleanups.push(created.drop);
    const client = new pg.Client({ connectionString: testDatabaseUrl });
    await client.connect();
    cleanups.push(() => client.end());
    database = { client, name: new URL(created.url).pathname.slice(1) };
    Object.assign(env, {
      DATABASE_URL: created.url,
      ...(await testBucketSettings()),
      ...(scan === 'clamd' ? { SCAN: 'required', CLAMD_SOCKET: clamdSocket } : {}),
    });
  }
  const probe = path.join(repoRoot, 'test/bench/memoryProbe.ts');
  const server = await startServerOf(repoRoot, name, env, ['--import', probe], { timeoutMs: 180_000 });
  children.push(server);
  return new Soak(name, server, tmpDir, probeDir, database);
}

/** The app is down for 15 s of every minute and answers one delivery in ten with 500. */
function flakyApp(app: WebhookReceiver): void {
  let n = 0;
  let ended = false;
  app.answer = () => (++n % 10 === 0 ? 500 : 204);
  const timer = setInterval(() => {
    // Not up again once the bench is over: a listening app would keep this process alive.
    void app.stop().then(() => sleep(15_000)).then(() => (ended ? undefined : app.start()));
  }, 60_000);
  cleanups.push(async () => {
    ended = true;
    clearInterval(timer);
  });
}

type Operation = (soak: Soak, files: SampleFile[], n: number) => Promise<void>;

/** The `n`th of the files the server accepts. */
const accepted = (files: SampleFile[], n: number) => {
  const genuine = files.filter((f) => !f.refused);
  return genuine[n % genuine.length]!;
};

/** Follows the upload to its end: on its event stream (closed early by one client in three), else by polling. */
async function settle(soak: Soak, id: string, n: number): Promise<void> {
  if (n % 2 === 0) {
    const stream = await openEventStream(`${soak.server.url}/api/uploads/${id}/events`);
    if (stream.status !== 200) throw new Error(`events of ${id}: ${stream.status}`);
    if (n % 3 === 0) {
      await Promise.race([stream.ended, sleep(200 + (n % 7) * 100)]);
      stream.close();
      soak.count('event streams closed by the client');
    } else {
      await stream.ended;
      soak.count('event streams read to their end');
    }
  }
  await waitUntilSettled(soak.server.url, id, 600_000);
}

async function remove(soak: Soak, id: string): Promise<void> {
  const res = await fetch(`${soak.server.url}/api/uploads/${id}`, { method: 'DELETE' });
  await res.arrayBuffer();
  if (!res.ok) throw new Error(`DELETE ${id}: ${res.status}`);
}

const operations: Array<[string, Operation]> = [
  [
    'whole upload',
    async (soak, files, n) => {
      const file = files[n % files.length]!;
      const upload = tusUpload(soak.server.url, file.data, { filename: file.name, filetype: file.type });
      if (file.refused) {
        const { status } = await tusRefusal(upload);
        if (status < 400 || status >= 500) throw new Error(`${file.name} answered ${status}, expected a 4xx`);
        soak.count('disguised file refused');
        return;
      }
      const { url } = await upload;
      await settle(soak, uploadIdOf(url), n);
      await remove(soak, uploadIdOf(url));
    },
  ],
  [
    'resumed upload',
    async (soak, files, n) => {
      const file = accepted(files, n);
      const options = { filename: file.name, filetype: file.type, chunkSize: 64 * 1024 };
      const first = await tusUpload(soak.server.url, file.data, { ...options, abortAfterBytes: Math.floor(file.data.length / 2) });
      const { url } = await tusUpload(soak.server.url, file.data, { ...options, uploadUrl: first.url });
      await settle(soak, uploadIdOf(url), n);
      await remove(soak, uploadIdOf(url));
    },
  ],
  [
    'concatenated upload',
    async (soak, files, n) => {
      const file = accepted(files, n);
      const { url } = await tusUpload(soak.server.url, file.data, { filename: file.name, filetype: file.type, parallelUploads: 2 });
      await settle(soak, uploadIdOf(url), n);
      await remove(soak, uploadIdOf(url));
    },
  ],
  [
    'deleted while unfinished',
    async (soak, files, n) => {
      const file = accepted(files, n);
      const { url } = await tusUpload(soak.server.url, file.data, { filename: file.name, filetype: file.type, chunkSize: 64 * 1024, abortAfterBytes: 1 });
      await remove(soak, uploadIdOf(url));
    },
  ],
  [
    'abandoned halfway',
    async (soak, files, n) => {
      const file = accepted(files, n);
      await tusUpload(soak.server.url, file.data, { filename: file.name, filetype: file.type, chunkSize: 64 * 1024, abortAfterBytes: Math.floor(file.data.length / 2) });
    },
  ],
];
/** How often each operation comes up in one turn of the schedule. */
const schedule = [0, 0, 0, 0, 1, 0, 2, 0, 3, 0, 1, 4];

/** Starts one operation every 1/rate s until `untilMs`; waits for those under way. */
async function traffic(soak: Soak, files: SampleFile[], untilMs: number): Promise<void> {
  const running = new Set<Promise<void>>();
  const started = performance.now();
  for (let n = 0; performance.now() < untilMs; n++) {
    const due = started + (n * 1000) / rate;
    if (due > performance.now()) await sleep(due - performance.now());
    if (running.size >= maxInFlight) {
      soak.count('skipped: too many under way');
      continue;
    }
    const [label, operation] = operations[schedule[n % schedule.length]!]!;
    const run = operation(soak, files, n).then(
      () => soak.count(label),
      (error: unknown) => soak.count(`${label}: ${describe(error)}`, soak.failures),
    );
    running.add(run);
    void run.finally(() => running.delete(run));
  }
  await Promise.all(running);
}

/** An error in one line: tus-js-client's names the request and the answer's status. */
function describe(error: unknown): string {
  const response = error instanceof tus.DetailedError ? error.originalResponse : null;
  const request = error instanceof tus.DetailedError ? error.originalRequest : null;
  if (response && request) return `${request.getMethod()} answered ${response.getStatus()}: ${response.getBody().slice(0, 120)}`;
  return String((error as Error).message ?? error).split('\n')[0]!.slice(0, 160);
}

/** Samples until `untilMs`, printing each sample. */
async function sampling(soak: Soak, untilMs: number): Promise<void> {
  while (performance.now() < untilMs) {
    await sleep(Math.min(sampleEveryMs, untilMs - performance.now()));
    printSample(soak, await soak.sample());
  }
}

function printSample(soak: Soak, s: Sample): void {
  console.log(
    `[${soak.name}] ${fmt(s.atMinutes, 1).padStart(5)} min  RSS ${fmt(s.rssBytes / MiB, 1)} MiB  heap ${fmt(s.heapBytes / MiB, 1)} MiB  ` +
      `fds ${s.fds}  db ${s.dbConnections}  tmp ${s.tempFiles} files ${fmt(s.tempBytes / 1024, 0)} KiB  anon ${fmt(s.anonBytes / MiB, 1)} MiB  ` +
      `external ${fmt(s.mainExternalBytes / MiB, 1)} (arrayBuffers ${fmt(s.mainArrayBuffersBytes / MiB, 1)}) MiB  ` +
      `${s.workers} workers: heap ${fmt(s.workersHeapBytes / MiB, 1)} external ${fmt(s.workersExternalBytes / MiB, 1)} MiB`,
  );
}

/** Least-squares slope of `value` over time, per hour. */
function slopePerHour(points: Sample[], value: (s: Sample) => number): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((a, s) => a + s.atMinutes, 0) / n;
  const my = points.reduce((a, s) => a + value(s), 0) / n;
  const num = points.reduce((a, s) => a + (s.atMinutes - mx) * (value(s) - my), 0);
  const den = points.reduce((a, s) => a + (s.atMinutes - mx) ** 2, 0);
  return den === 0 ? 0 : (num / den) * 60;
}

async function runSetup(name: SetupName, root: string, files: SampleFile[]): Promise<() => void> {
  const soak = await startSetup(name, root);
  console.log(`[${name}] server pid ${soak.server.pid} ${soak.server.url}, TMPDIR ${soak.tmpDir}`);
  printSample(soak, await soak.sample());
  const until = performance.now() + minutes * 60_000;
  await Promise.all([traffic(soak, files, until), sampling(soak, until)]);
  // The last jobs and webhook retries finish; then the end sample.
  await sleep(Math.min(60_000, sampleEveryMs));
  const end = await soak.sample();
  printSample(soak, end);
  await soak.server.stop();
  const left = await folderSize(soak.tmpDir);
  return () => report(soak, left);
}

function report(soak: Soak, left: { files: number; bytes: number; names: string[] }): void {
  // The last sample is the end one, taken once the traffic had stopped: not part of the slopes.
  const during = soak.sampled.slice(0, -1);
  const after = during.filter((s) => s.atMinutes >= warmupMinutes);
  const secondHalf = during.filter((s) => s.atMinutes >= minutes / 2);
  const first = after[0] ?? soak.sampled[0]!;
  const last = soak.sampled.at(-1)!;
  const rows: Array<[string, (s: Sample) => number, string, (v: number) => string]> = [
    ['RSS', (s) => s.rssBytes / MiB, 'MiB', (v) => fmt(v, 1)],
    ['anonymous memory', (s) => s.anonBytes / MiB, 'MiB', (v) => fmt(v, 1)],
    ['V8 heap used', (s) => s.heapBytes / MiB, 'MiB', (v) => fmt(v, 1)],
    ['main thread external', (s) => s.mainExternalBytes / MiB, 'MiB', (v) => fmt(v, 1)],
    ['main thread arrayBuffers', (s) => s.mainArrayBuffersBytes / MiB, 'MiB', (v) => fmt(v, 1)],
    ['workers\' V8 heap used', (s) => s.workersHeapBytes / MiB, 'MiB', (v) => fmt(v, 1)],
    ['workers\' external', (s) => s.workersExternalBytes / MiB, 'MiB', (v) => fmt(v, 1)],
    ['open file descriptors', (s) => s.fds, '', (v) => fmt(v, 0)],
    ['database connections', (s) => s.dbConnections, '', (v) => fmt(v, 0)],
    ['files in TMPDIR', (s) => s.tempFiles, '', (v) => fmt(v, 0)],
  ];
  console.log(`\n## ${soak.name}: ${minutes} min, ${after.length} samples after ${fmt(warmupMinutes, 1)} min of warm-up\n`);
  console.log('| resource | start | after warm-up | end | slope after warm-up · second half (per hour) |');
  console.log('|---|---:|---:|---:|---:|');
  for (const [label, value, unit, show] of rows) {
    const u = unit ? ` ${unit}` : '';
    console.log(`| ${label} | ${show(value(soak.sampled[0]!))}${u} | ${show(value(first))}${u} | ${show(value(last))}${u} | ${fmt(slopePerHour(after, value), 1)} · ${fmt(slopePerHour(secondHalf, value), 1)}${u}/h |`);
  }
  console.log(`\noperations: ${[...soak.counts].map(([k, v]) => `${k} ${v}`).join(', ')}`);
  console.log(`failed: ${soak.failures.size === 0 ? 'none' : [...soak.failures].map(([k, v]) => `\n  ${v} × ${k}`).join('')}`);
  console.log(`left in TMPDIR after the server stopped: ${left.files === 0 ? 'nothing' : `${left.files} entries, ${left.bytes} bytes: ${left.names.slice(0, 20).join(', ')}`}`);
}

async function main(): Promise<void> {
  const root = await reachableTempDir('tus-soak-');
  cleanups.push(() => fs.rm(root, { recursive: true, force: true }));
  console.log(
    `soak — node ${process.version}, ${os.availableParallelism()} CPUs, load average ${os.loadavg()[0]!.toFixed(1)}; ` +
      `${setupNames.join(' and ')} for ${minutes} min at ${rate} operation(s)/s, a sample every ${fmt(sampleEveryMs / 1000, 0)} s` +
      (setupNames.includes('scaleout') ? `; scale-out scanning: ${scan}` : '') +
      (media === 'off' ? '; PDFs only' : '') +
      (process.env.LD_PRELOAD ? `; LD_PRELOAD=${process.env.LD_PRELOAD}` : '') +
      Object.entries(process.env).filter(([k]) => k.startsWith('MALLOC_')).map(([k, v]) => `; ${k}=${v}`).join(''),
  );
  const files = (await makeFiles(root)).filter((f) => media === 'on' || f.type === 'application/pdf');
  console.log(`files: ${files.map((f) => `${f.name} (${fmt(f.data.length / 1024, 0)} KiB)`).join(', ')}`);
  const reports = await Promise.all(setupNames.map((name) => runSetup(name, root, files)));
  for (const print of reports) print();
}

await runBench(main, children, async () => {
  await Promise.all(children.splice(0).map((c) => c.stop().catch(() => undefined)));
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});
