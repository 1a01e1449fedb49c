// `npm run bench:direct`, part of `npm run bench`: one large file into S3 (radosgw) three ways, in
// the same run, against the same bucket:
//  - direct: the client signs each part through the server's /s3/multipart routes (as Uppy's AwsS3
//    plugin does) and PUTs it straight to radosgw, 4 parts at once, 5 MiB parts;
//  - tus:    one POST and one PATCH through the server (S3 store, parts streamed to the bucket);
//  - sdk:    @aws-sdk/lib-storage's Upload from the bench process (5 MiB parts, 4 at once).
// The server runs the scale-out setup (S3 store, a fresh Postgres database, SCAN=off,
// RUN_JOBS=false). Every object is read back and hashed outside the timed window and the bucket
// emptied after each run (radosgw's store is RAM). Prints the time and the CPU seconds per GiB of
// the server, the bench process and radosgw; direct should cost the server almost nothing.
// Exits non-zero on an error.
//
// Settings (environment):
//   BENCH_DIRECT_SIZE=1024   MiB uploaded per run (1 GiB; smaller on a busy machine)
//   BENCH_REPEAT=3           rounds; each side runs once per round (the order rotates)
//   BENCH_LOG_LEVEL=warn     LOG_LEVEL of the server
import { createReadStream, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { loadConfig } from '../../server/infra/settings/config.ts';
import { s3ClientConfig } from '../../server/infra/store/s3Storage.ts';
import { createTestBucket, servicesDir } from '../services/env.ts';
import { reachableTempDir } from '../support/reachableTempDir.ts';
import { createTestDatabase } from '../support/testServer.ts';
import { bucketServerEnv, emptyBucket, expectWhole } from './bucket.ts';
import { plainUpload, type Slice } from './clients.ts';
import { fmt, GiB, median, MiB, positiveInt, writeSource } from './common.ts';
import { runBench, startServerOf, repoRoot, watchProcess, type ChildServer } from './processes.ts';

const size = positiveInt('BENCH_DIRECT_SIZE', 1024) * MiB;
const repeat = positiveInt('BENCH_REPEAT', 3);
const partSize = 5 * MiB;
const partsAtOnce = 4;

type Side = 'direct' | 'tus' | 'sdk';
const sides: Side[] = ['direct', 'tus', 'sdk'];

interface Run {
  side: Side;
  seconds: number;
  cpu: { client: number; server: number; radosgw: number };
}

interface Context {
  server: ChildServer;
  client: S3Client;
  bucket: string;
  radosgwPid: number;
  slice: Slice;
}

async function main(): Promise<void> {
  console.log(`Direct-to-S3 bench — node ${process.version}, ${os.availableParallelism()} CPUs, load average ${os.loadavg()[0]!.toFixed(1)}, ${fmt(size / MiB, 0)} MiB, ${repeat} round(s)`);
  const source = path.join(tempRoot, 'source.bin');
  await writeSource(source, size);
  const database = await createTestDatabase();
  drops.push(database.drop);
  const bucket = await createTestBucket();
  const env = bucketServerEnv(path.join(tempRoot, 'data'), database.url, bucket);
  const client = new S3Client(s3ClientConfig(loadConfig(env).s3!));
  const server = await startServerOf(repoRoot, 'server', env);
  children.push(server);
  const radosgwPid = Number(readFileSync(path.join(servicesDir, 'ceph', 'run', 'client.rgw.tus.pid'), 'utf8'));
  const context: Context = { server, client, bucket, radosgwPid, slice: { file: source, start: 0, length: size } };

  // Warm-up (not measured): JIT, first queries, connections.
  for (const side of sides) await runOnce(side, { ...context, slice: { file: source, start: 0, length: Math.min(size, 16 * MiB) } });
  const runs: Run[] = [];
  for (let round = 0; round < repeat; round++) {
    const order = [...sides.slice(round % sides.length), ...sides.slice(0, round % sides.length)];
    for (const side of order) {
      const run = await runOnce(side, context);
      runs.push(run);
      console.log(`  round ${round + 1} ${side.padEnd(6)} ${fmt(run.seconds, 2).padStart(7)} s  CPU s: server ${fmt(run.cpu.server, 2)}, client ${fmt(run.cpu.client, 2)}, radosgw ${fmt(run.cpu.radosgw, 2)}`);
    }
  }
  const gib = size / GiB;
  const of = (side: Side) => runs.filter((r) => r.side === side);
  const seconds = (side: Side) => median(of(side).map((r) => r.seconds));
  const cpu = (side: Side, key: keyof Run['cpu']) => median(of(side).map((r) => r.cpu[key])) / gib;
  console.log(`\n## Results: median of ${repeat}; ${fmt(size / MiB, 0)} MiB; time as a ratio to lib-storage's in the same run; CPU s/GiB\n`);
  console.log('| path | time s | time / sdk | server CPU s/GiB | client CPU s/GiB | radosgw CPU s/GiB |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const side of sides) {
    console.log(`| ${side} | ${fmt(seconds(side), 2)} | ${fmt(seconds(side) / seconds('sdk'), 2)}× | ${fmt(cpu(side, 'server'), 2)} | ${fmt(cpu(side, 'client'), 2)} | ${fmt(cpu(side, 'radosgw'), 2)} |`);
  }
  console.log(`\nserver CPU, direct / tus: ${fmt(cpu('direct', 'server') / cpu('tus', 'server'), 3)}×`);
  client.destroy();
}

/** One upload of the slice on one side, timed from the first request to the last answer; then checked and the bucket emptied. */
async function runOnce(side: Side, context: Context): Promise<Run> {
  const { slice } = context;
  const watchServer = watchProcess(context.server.pid);
  const watchRadosgw = watchProcess(context.radosgwPid);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let key: string;
  if (side === 'direct') key = await directUpload(context.server.url, slice);
  else if (side === 'tus') key = (await plainUpload(context.server.url, slice, 'bench.bin')).split('/').pop()!;
  else {
    key = `sdk-${Date.now().toString(36)}`;
    const body = createReadStream(slice.file, { start: slice.start, end: slice.start + slice.length - 1 });
    await new Upload({ client: context.client, params: { Bucket: context.bucket, Key: key, Body: body } }).done();
  }
  const seconds = (performance.now() - t0) / 1000;
  const clientCpu = process.cpuUsage(cpu0);
  const cpu = { client: (clientCpu.user + clientCpu.system) / 1e6, server: watchServer.stop().cpuSeconds, radosgw: watchRadosgw.stop().cpuSeconds };
  await expectWhole(context.client, context.bucket, key, slice);
  await emptyBucket(context.client, context.bucket);
  return { side, seconds, cpu };
}

/** What Uppy's AwsS3 plugin does: create, then for each part sign (server) and PUT (bucket), then complete; returns the key. */
async function directUpload(baseUrl: string, slice: Slice): Promise<string> {
  const json = async (method: string, url: string, body?: unknown) => {
    const res = await fetch(url, { method, headers: body ? { 'Content-Type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
    if (!res.ok) throw new Error(`${method} ${url} answered ${res.status}: ${await res.text()}`);
    return res.json() as Promise<Record<string, unknown>>;
  };
  const created = (await json('POST', `${baseUrl}/s3/multipart`, { filename: 'bench.bin', type: 'application/octet-stream', metadata: { size: slice.length } })) as { key: string; uploadId: string };
  const route = `${baseUrl}/s3/multipart/${encodeURIComponent(created.uploadId)}`;
  const count = Math.ceil(slice.length / partSize);
  const parts: { PartNumber: number; ETag: string }[] = [];
  let next = 1;
  await Promise.all(
    Array.from({ length: partsAtOnce }, async () => {
      for (let n = next++; n <= count; n = next++) {
        const { url } = (await json('GET', `${route}/${n}?key=${created.key}`)) as { url: string };
        const start = slice.start + (n - 1) * partSize;
        const length = Math.min(partSize, slice.start + slice.length - start);
        parts.push({ PartNumber: n, ETag: await putPart(url, slice.file, start, length) });
      }
    }),
  );
  parts.sort((a, b) => a.PartNumber - b.PartNumber);
  await json('POST', `${route}/complete?key=${created.key}`, { parts });
  return created.key;
}

/** A part's PUT with node:http, its body streamed from the file; resolves with its ETag. */
function putPart(url: string, file: string, start: number, length: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'PUT', headers: { 'Content-Length': String(length) } }, (res) => {
      res.resume();
      res.once('end', () => (res.statusCode === 200 && res.headers.etag ? resolve(res.headers.etag) : reject(new Error(`part PUT answered ${res.statusCode}`))));
      res.once('error', reject);
    });
    req.once('error', reject);
    pipeline(createReadStream(file, { start, end: start + length - 1 }), req).catch(reject);
  });
}

async function cleanup(): Promise<void> {
  await Promise.all(children.splice(0).map((c) => c.stop().catch(() => undefined)));
  for (const drop of drops.splice(0)) await drop().catch(() => undefined);
  await fs.rm(tempRoot, { recursive: true, force: true });
}

const tempRoot = await reachableTempDir('tus-bench-direct-');
const children: ChildServer[] = [];
const drops: Array<() => Promise<void>> = [];
await runBench(main, children, cleanup);
