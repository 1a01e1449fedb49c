import os from 'node:os';
import path from 'node:path';

/** Every setting the server reads, parsed and checked once at start. */
export interface Config {
  port: number;
  host: string;
  publicUrl: string | undefined;
  dataDir: string;
  databaseUrl: string | undefined;
  s3: S3Config | undefined;
  clamd: ClamdConfig | undefined;
  scan: 'required' | 'off';
  maxUploadSize: number;
  uploadExpiresAfterMs: number;
  workerThreads: number;
  logLevel: LogLevel;
  jobLeaseMs: number;
  jobPollMs: number;
  jobMaxAttempts: number;
  runJobs: boolean;
  cleanupIntervalMs: number;
  rateLimitPerMinute: number;
  maxImagePixels: number;
  maxVideoPixels: number;
  videoTimeoutMs: number;
  typePolicy: TypePolicy;
}

export interface S3Config {
  bucket: string;
  endpoint: string | undefined;
  region: string;
  accessKeyId: string | undefined;
  secretAccessKey: string | undefined;
  forcePathStyle: boolean;
  partSize: number;
  /** `WHEN_REQUIRED` for radosgw and older MinIO, which answer 411 to trailing checksums. */
  checksums: 'WHEN_SUPPORTED' | 'WHEN_REQUIRED';
  presignExpiresSeconds: number;
}

export type ClamdConfig =
  | { socket: string; timeoutMs: number }
  | { host: string; port: number; timeoutMs: number };

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** One allowed file type: the MIME type file-type reports, its extensions and its size limit. */
export interface AllowedType {
  mime: string;
  extensions: string[];
  maxSize: number;
}
export type TypePolicy = AllowedType[];

const MiB = 1024 * 1024;

/** The seed's allow-list plus the common phone formats. */
export const defaultTypePolicy: TypePolicy = [
  { mime: 'image/jpeg', extensions: ['jpg', 'jpeg'], maxSize: 20 * MiB },
  { mime: 'image/png', extensions: ['png'], maxSize: 20 * MiB },
  { mime: 'image/webp', extensions: ['webp'], maxSize: 20 * MiB },
  { mime: 'image/heic', extensions: ['heic'], maxSize: 30 * MiB },
  { mime: 'image/heif', extensions: ['heif', 'heic'], maxSize: 30 * MiB },
  { mime: 'application/pdf', extensions: ['pdf'], maxSize: 50 * MiB },
  { mime: 'video/mp4', extensions: ['mp4', 'm4v'], maxSize: 500 * MiB },
  { mime: 'video/quicktime', extensions: ['mov', 'qt'], maxSize: 500 * MiB },
  { mime: 'video/webm', extensions: ['webm'], maxSize: 500 * MiB },
];

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid settings:\n  ${problems.join('\n  ')}`);
  }
}

type Env = Record<string, string | undefined>;

/** Reads settings from the environment; throws one ConfigError naming every bad value. */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  const read = new SettingReader(env, problems);

  const dataDir = path.resolve(read.string('DATA_DIR') ?? './data');
  const s3Bucket = read.string('S3_BUCKET');
  const clamdSocket = read.string('CLAMD_SOCKET');
  const clamdHost = read.string('CLAMD_HOST');
  // Longer than clamd's own MaxScanTime (120 s), so clamd gives its verdict before we give up.
  const clamdTimeoutMs = read.duration('CLAMD_TIMEOUT', 150_000);
  const clamd: ClamdConfig | undefined = clamdSocket
    ? { socket: clamdSocket, timeoutMs: clamdTimeoutMs }
    : clamdHost
      ? { host: clamdHost, port: read.integer('CLAMD_PORT', 3310, 1, 65535), timeoutMs: clamdTimeoutMs }
      : undefined;
  if (!clamdHost && env.CLAMD_PORT) problems.push('CLAMD_PORT: set CLAMD_HOST too (or CLAMD_SOCKET)');

  const scan = read.oneOf('SCAN', ['required', 'off'] as const, clamd ? 'required' : 'off');
  if (scan === 'required' && !clamd) problems.push('SCAN: "required" needs CLAMD_SOCKET or CLAMD_HOST');

  const typePolicy = read.typePolicy('TYPE_POLICY');
  const largestType = Math.max(...typePolicy.map((t) => t.maxSize));

  const config: Config = {
    port: read.integer('PORT', 1080, 0, 65535),
    host: read.string('HOST') ?? '0.0.0.0',
    publicUrl: read.url('PUBLIC_URL'),
    dataDir,
    databaseUrl: read.string('DATABASE_URL'),
    s3: s3Bucket
      ? {
          bucket: s3Bucket,
          endpoint: read.url('S3_ENDPOINT'),
          region: read.string('S3_REGION') ?? 'us-east-1',
          accessKeyId: read.string('S3_ACCESS_KEY_ID'),
          secretAccessKey: read.string('S3_SECRET_ACCESS_KEY'),
          forcePathStyle: read.boolean('S3_FORCE_PATH_STYLE', false),
          partSize: read.size('S3_PART_SIZE', 8 * MiB, 5 * MiB),
          checksums: read.oneOf('S3_CHECKSUMS', ['WHEN_SUPPORTED', 'WHEN_REQUIRED'] as const, 'WHEN_REQUIRED'),
          presignExpiresSeconds: Math.round(read.duration('S3_PRESIGN_EXPIRES', 300_000) / 1000),
        }
      : undefined,
    clamd,
    scan,
    maxUploadSize: read.size('MAX_UPLOAD_SIZE', largestType, 1),
    uploadExpiresAfterMs: read.duration('UPLOAD_EXPIRES_AFTER', 24 * 3600_000),
    workerThreads: read.integer('WORKER_THREADS', os.availableParallelism(), 1, 256),
    logLevel: read.oneOf('LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info'),
    jobLeaseMs: read.duration('JOB_LEASE', 60_000),
    jobPollMs: read.duration('JOB_POLL_INTERVAL', 1_000),
    jobMaxAttempts: read.integer('JOB_MAX_ATTEMPTS', 5, 1, 100),
    runJobs: read.boolean('RUN_JOBS', true),
    cleanupIntervalMs: read.duration('CLEANUP_INTERVAL', 15 * 60_000),
    rateLimitPerMinute: read.integer('RATE_LIMIT_UPLOADS', 60, 0, 1_000_000),
    // 100 megapixels: above any phone or DSLR photo, far below what fills memory when decoded.
    maxImagePixels: read.integer('MAX_IMAGE_PIXELS', 100_000_000, 1, 2 ** 31),
    // 8K UHD: larger frames are refused before ffmpeg decodes one (each costs memory per frame in flight).
    maxVideoPixels: read.integer('MAX_VIDEO_PIXELS', 7680 * 4320, 1, 2 ** 31),
    videoTimeoutMs: read.duration('VIDEO_TIMEOUT', 30 * 60_000),
    typePolicy,
  };
  if (!s3Bucket) {
    for (const name of ['S3_ENDPOINT', 'S3_ACCESS_KEY_ID', 'S3_SECRET_ACCESS_KEY', 'S3_PART_SIZE']) {
      if (env[name]) problems.push(`${name}: set S3_BUCKET too, or the folder store is used`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** Parses one kind of value per method and records a message naming the setting when it is bad. */
class SettingReader {
  constructor(
    private readonly env: Env,
    private readonly problems: string[],
  ) {}

  string(name: string): string | undefined {
    const value = this.env[name]?.trim();
    return value ? value : undefined;
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    const raw = this.string(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      this.problems.push(`${name}: "${raw}" is not a whole number from ${min} to ${max}`);
      return fallback;
    }
    return value;
  }

  boolean(name: string, fallback: boolean): boolean {
    const raw = this.string(name)?.toLowerCase();
    if (raw === undefined) return fallback;
    if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
    if (['0', 'false', 'no', 'off'].includes(raw)) return false;
    this.problems.push(`${name}: "${raw}" is not true or false`);
    return fallback;
  }

  oneOf<T extends string>(name: string, choices: readonly T[], fallback: T): T {
    const raw = this.string(name);
    if (raw === undefined) return fallback;
    const found = choices.find((c) => c.toLowerCase() === raw.toLowerCase());
    if (!found) this.problems.push(`${name}: "${raw}" is not one of ${choices.join(', ')}`);
    return found ?? fallback;
  }

  url(name: string): string | undefined {
    const raw = this.string(name);
    if (raw === undefined) return undefined;
    try {
      return new URL(raw).toString().replace(/\/$/, '');
    } catch {
      this.problems.push(`${name}: "${raw}" is not a URL`);
      return undefined;
    }
  }

  /** Sizes accept plain bytes or a unit: `500MiB`, `20MB`, `1GiB`. */
  size(name: string, fallback: number, min: number): number {
    const raw = this.string(name);
    if (raw === undefined) return fallback;
    const bytes = parseSize(raw);
    if (bytes === undefined || bytes < min) {
      this.problems.push(`${name}: "${raw}" is not a size of at least ${min} bytes (e.g. 20MiB)`);
      return fallback;
    }
    return bytes;
  }

  /** Durations accept milliseconds or a unit: `500ms`, `30s`, `15m`, `24h`, `7d`. */
  duration(name: string, fallbackMs: number): number {
    const raw = this.string(name);
    if (raw === undefined) return fallbackMs;
    const ms = parseDuration(raw);
    if (ms === undefined) {
      this.problems.push(`${name}: "${raw}" is not a duration (e.g. 30s, 15m, 24h)`);
      return fallbackMs;
    }
    return ms;
  }

  /** TYPE_POLICY: `mime:ext|ext:size,…`, e.g. `image/jpeg:jpg|jpeg:20MiB,application/pdf:pdf:50MiB`. */
  typePolicy(name: string): TypePolicy {
    const raw = this.string(name);
    if (raw === undefined) return defaultTypePolicy;
    const policy: TypePolicy = [];
    for (const entry of raw.split(',')) {
      const [mime, exts, size] = entry.trim().split(':');
      const maxSize = size === undefined ? undefined : parseSize(size);
      if (!mime?.includes('/') || !exts || maxSize === undefined) {
        this.problems.push(`${name}: "${entry}" is not mime:ext|ext:size (e.g. image/png:png:20MiB)`);
        continue;
      }
      policy.push({ mime: mime.toLowerCase(), extensions: exts.toLowerCase().split('|'), maxSize });
    }
    return policy.length > 0 ? policy : defaultTypePolicy;
  }
}

const sizeUnits: Record<string, number> = {
  '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: MiB, gib: 1024 * MiB,
};
const durationUnits: Record<string, number> = { '': 1, ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

function parseWithUnit(raw: string, units: Record<string, number>): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(raw.trim());
  const factor = match ? units[match[2]!.toLowerCase()] : undefined;
  if (!match || factor === undefined) return undefined;
  return Math.round(Number(match[1]) * factor);
}

export const parseSize = (raw: string) => parseWithUnit(raw, sizeUnits);
export const parseDuration = (raw: string) => parseWithUnit(raw, durationUnits);
