// `npm run bench:idempotency`: what Idempotency-Key costs a creation. Bodyless tus POSTs against
// the real server (embedded setup: folder store, embedded Postgres, no clamd, no jobs), in three
// kinds, interleaved per round: without a key (the baseline of the same run), each with a new key
// (the claim in the creation's transaction), and retries of one key (answered from the record,
// without @tus/server).
//
// Settings (environment):
//   BENCH_REPEAT=5             rounds (the table shows the median and the range)
//   BENCH_CREATIONS=200        requests per kind and round
//   BENCH_CONCURRENCY=8        requests under way at once
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import { loadConfig } from '../../server/infra/settings/config.ts';
import { createLogger } from '../../server/infra/settings/log.ts';
import { startServer } from '../../server/main/start.ts';
import { reachableTempDir } from '../support/reachableTempDir.ts';
import { fmt, median, positiveInt, serverEnv } from './common.ts';

const repeat = positiveInt('BENCH_REPEAT', 5);
const creations = positiveInt('BENCH_CREATIONS', 200);
const concurrency = positiveInt('BENCH_CONCURRENCY', 8);

type Kind = 'no key' | 'a new key each' | 'a retry of one key';
const kinds: Kind[] = ['no key', 'a new key each', 'a retry of one key'];

async function main(): Promise<void> {
  const dataDir = await reachableTempDir('bench-idempotency-');
  const config = loadConfig({ ...serverEnv(dataDir), RUN_JOBS: 'false', QUOTA_UPLOADS_IN_FLIGHT: '0' });
  const server = await startServer(config, createLogger(config.logLevel));
  const perSecond: Record<Kind, number[]> = { 'no key': [], 'a new key each': [], 'a retry of one key': [] };
  const retriedKey = `"${randomUUID()}"`;
  const post = async (key: string | undefined) => {
    const res = await fetch(`${server.url}/files/`, {
      method: 'POST',
      headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': '1000', 'Upload-Metadata': `filename ${Buffer.from('bench.bin').toString('base64')}`, ...(key && { 'Idempotency-Key': key }) },
    });
    if (res.status !== 201) throw new Error(`POST: ${res.status} ${await res.text()}`);
    return res.headers.get('Location');
  };
  const first = await post(retriedKey);
  const keyOf = (kind: Kind) => (kind === 'no key' ? undefined : kind === 'a new key each' ? `"${randomUUID()}"` : retriedKey);
  try {
    for (let round = 0; round < repeat; round++) {
      for (const kind of round % 2 === 0 ? kinds : [...kinds].reverse()) {
        let next = 0;
        const started = performance.now();
        await Promise.all(
          Array.from({ length: concurrency }, async () => {
            while (next++ < creations) {
              const location = await post(keyOf(kind));
              if (kind === 'a retry of one key' && location !== first) throw new Error(`a retry made ${location}, not ${first}`);
            }
          }),
        );
        const rate = creations / ((performance.now() - started) / 1000);
        perSecond[kind].push(rate);
        console.log(`round ${round + 1}: ${kind} ${fmt(rate, 0)} requests/s`);
      }
    }
  } finally {
    await server.close();
    await fs.rm(dataDir, { recursive: true, force: true });
  }
  // Each round's kinds ran back to back: the ratio within a round is steadier than the rates across rounds.
  const ratios = (kind: Kind) => perSecond[kind].map((rate, round) => rate / perSecond['no key'][round]!);
  console.log(`\n${creations} bodyless tus POSTs per kind and round, ${concurrency} at once, ${repeat} rounds:\n`);
  console.log('| creation | requests/s (median, range) | / without a key, same round (median, range) |');
  console.log('|---|---:|---:|');
  for (const kind of kinds) {
    const all = perSecond[kind];
    const ratio = ratios(kind);
    console.log(`| ${kind} | ${fmt(median(all), 0)} (${fmt(Math.min(...all), 0)}–${fmt(Math.max(...all), 0)}) | ${fmt(median(ratio), 2)} (${fmt(Math.min(...ratio), 2)}–${fmt(Math.max(...ratio), 2)}) |`);
  }
}

await main();
