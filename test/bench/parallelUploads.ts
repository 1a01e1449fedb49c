// `npm run bench` (last part): tus-js-client's parallelUploads: 4 (the concatenation extension)
// against one stream, for the same file over the same slow path: a delaying TCP proxy
// (delayProxy.ts) in front of the real server (embedded setup: folder store, embedded Postgres,
// no clamd, no jobs). The baseline is the single stream of the same run; the two alternate.
//
// Settings (environment):
//   BENCH_REPEAT=3             rounds (the table shows the median and the range)
//   BENCH_LATENCY_MS=50        one-way delay of the proxy (100 ms round trip)
//   BENCH_WINDOW_KIB=256       bytes on the way per connection and direction (a TCP window)
//   BENCH_PARALLEL_MIB=32      the file's size
import { loadConfig } from '../../server/infra/settings/config.ts';
import { createLogger } from '../../server/infra/settings/log.ts';
import { startServer } from '../../server/main/start.ts';
import { reachableTempDir } from '../support/reachableTempDir.ts';
import { tusUpload } from '../support/uploads.ts';
import { fmt, median, MiB, positiveInt, serverEnv } from './common.ts';
import { startDelayProxy } from './delayProxy.ts';
import fs from 'node:fs/promises';
import { randomBytes } from 'node:crypto';

const repeat = positiveInt('BENCH_REPEAT', 3);
const latencyMs = positiveInt('BENCH_LATENCY_MS', 50);
const windowBytes = positiveInt('BENCH_WINDOW_KIB', 256) * 1024;
const size = positiveInt('BENCH_PARALLEL_MIB', 32) * MiB;
const streamCounts = [1, 4] as const;

async function main(): Promise<void> {
  const dataDir = await reachableTempDir('bench-parallel-');
  const config = loadConfig({ ...serverEnv(dataDir), RUN_JOBS: 'false' });
  const server = await startServer(config, createLogger(config.logLevel));
  const port = Number(new URL(server.url).port);
  const proxy = await startDelayProxy(port, latencyMs, windowBytes);
  const endpoint = `http://127.0.0.1:${proxy.port}`;
  const file = randomBytes(size);
  const seconds: Record<number, number[]> = { 1: [], 4: [] };
  try {
    for (let round = 0; round < repeat; round++) {
      for (const streams of round % 2 === 0 ? streamCounts : [...streamCounts].reverse()) {
        const started = performance.now();
        const { url } = await tusUpload(endpoint, file, { filename: 'bench.bin', filetype: 'application/octet-stream', parallelUploads: streams > 1 ? streams : undefined });
        const elapsed = (performance.now() - started) / 1000;
        // The whole file arrived (for parallel: the final reports every byte).
        const head = await fetch(`${server.url}/files/${url.split('/').pop()}`, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
        if (head.headers.get('Upload-Offset') !== String(size)) throw new Error(`${streams} stream(s): the upload holds ${head.headers.get('Upload-Offset')} of ${size} bytes`);
        seconds[streams]!.push(elapsed);
        console.log(`round ${round + 1}: ${streams} stream(s) ${fmt(elapsed, 2)} s`);
      }
    }
  } finally {
    await proxy.close();
    await server.close();
    await fs.rm(dataDir, { recursive: true, force: true });
  }
  const row = (streams: number) => {
    const all = seconds[streams]!;
    const m = median(all);
    return `| ${streams === 1 ? 'one stream' : `parallelUploads: ${streams}`} | ${fmt(m, 2)} s (${fmt(Math.min(...all), 2)}–${fmt(Math.max(...all), 2)}) | ${fmt(size / MiB / m, 1)} MiB/s | ${fmt(median(seconds[1]!) / m, 2)}× |`;
  };
  console.log(`\n${size / MiB} MiB over a path of ${latencyMs} ms each way and a ${windowBytes / 1024} KiB window per connection (${fmt(windowBytes / MiB / (latencyMs / 1000), 1)} MiB/s per connection at most), ${repeat} rounds:\n`);
  console.log('| client | time (median, range) | throughput | speed-up over one stream |');
  console.log('|---|---|---|---|');
  console.log(row(1));
  console.log(row(4));
}

await main();
