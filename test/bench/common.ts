// Helpers shared by the bench scripts (run.ts, layers.ts).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { promisify } from 'node:util';
import { sleep } from './processes.ts';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** Flushes dirty pages left by the previous run so each run starts from a quiet disk. */
export async function settleDisk(): Promise<void> {
  await promisify(execFile)('sync').catch(() => undefined);
  await sleep(200);
}

/** The source all uploads read slices of: random bytes, written in 256 KiB calls (large writes are slow here). */
export async function writeSource(file: string, size: number): Promise<void> {
  const block = randomBytes(4 * MiB);
  const handle = await fs.open(file, 'w');
  try {
    for (let offset = 0; offset < size; offset += 256 * 1024) {
      const at = offset % block.length;
      await handle.write(block.subarray(at, at + Math.min(256 * 1024, size - offset)));
    }
  } finally {
    await handle.close();
  }
}

/**
 * The node flags `npm start` gives the server (package.json), so the bench measures what users
 * run, and BENCH_SERVER_NODE_ARGS besides.
 */
export async function benchServerNodeArgs(): Promise<string[]> {
  const pkg = JSON.parse(await fs.readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { scripts: { start: string } };
  const startArgs = pkg.scripts.start.split(' ').slice(1, -1);
  return [...startArgs, ...(process.env.BENCH_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? [])];
}

export function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined) continue;
    // The embedded setup: no Postgres, no S3, no clamd, whatever the caller's environment says.
    if (/^(CLAMD_|S3_|DATABASE_URL$|SCAN$|TYPE_POLICY$|MAX_UPLOAD_SIZE$|PUBLIC_URL$|RUN_JOBS$|LOG_LEVEL$|PORT$|HOST$|DATA_DIR$)/.test(key)) continue;
    env[key] = value;
  }
  return env;
}

export function serverEnv(dataDir: string): Record<string, string> {
  return {
    ...baseEnv(),
    DATA_DIR: dataDir,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
    SCAN: 'off',
    RUN_JOBS: process.env.BENCH_RUN_JOBS ?? 'true',
    JOB_POLL_INTERVAL: '250ms',
    // The default policy stops at 500 MiB (video); the bench uploads up to 1 GiB of bytes.
    TYPE_POLICY: 'application/octet-stream:bin:2GiB',
    MAX_UPLOAD_SIZE: '2GiB',
    RATE_LIMIT_UPLOADS: '0',
  };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export const fmt = (n: number, digits: number) => n.toFixed(digits);
export const fmtMiB = (bytes: number) => `${fmt(bytes / MiB, 0)} MiB`;

export function positiveInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name}: "${raw}" is not a positive whole number`);
  return value;
}

