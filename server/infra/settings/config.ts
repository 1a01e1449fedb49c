import { createPublicKey, hkdfSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ClamdConfig } from '../../../processors/clamd.ts';
import type { HlsSettings, Rung } from '../../../processors/hlsLadder.ts';

/** Every setting the server reads, parsed and checked once at start. */
export interface Config {
  port: number;
  host: string;
  publicUrl: string | undefined;
  dataDir: string;
  databaseUrl: string | undefined;
  /** Without DATABASE_URL, as root: the user the embedded Postgres runs as (it refuses root). */
  embeddedPostgresUser: string;
  databaseHeartbeat: DatabaseHeartbeat;
  s3: S3Config | undefined;
  clamd: ClamdConfig | undefined;
  scan: 'required' | 'off';
  /** How long an inspection waits for an unreachable clamd (without using its attempts) before the upload fails. */
  scanWaitMaxMs: number;
  /** How long a job waits for an unreachable store (without using its attempts) before it gives up. */
  storeWaitMaxMs: number;
  maxUploadSize: number;
  uploadExpiresAfterMs: number;
  /** How long an Idempotency-Key keeps naming the upload its creation made (hooks/idempotentCreation.ts). */
  idempotencyTtlMs: number;
  workerThreads: number;
  logLevel: LogLevel;
  jobLeaseMs: number;
  jobPollMs: number;
  jobMaxAttempts: number;
  runJobs: boolean;
  cleanupIntervalMs: number;
  /** How long a failed upload's original is kept (for a requeue) before cleanup removes it. */
  failedRetentionMs: number;
  /** How long the database keeps what it no longer needs (server/infra/db/retention.ts). */
  retention: { deletedUploadsMs: number; webhookMessagesMs: number; jobsMs: number; eventsMs: number };
  rateLimitPerMinute: number;
  maxImagePixels: number;
  maxVideoPixels: number;
  videoTimeoutMs: number;
  imageTimeoutMs: number;
  /** The audio output's integrated loudness, LUFS (AUDIO_LOUDNESS). */
  audioLoudness: number;
  /** Min/max pairs in the waveform output (WAVEFORM_POINTS). */
  waveformPoints: number;
  audioTimeoutMs: number;
  /** Every video's `hls` output; undefined with HLS=off. */
  hls: HlsSettings | undefined;
  /**
   * Lifetime of the links to multi-file outputs (`hls`, `storyboard`): players never reload a VOD
   * playlist, so its links must outlast a long viewing.
   */
  hlsLinkTtlMs: number;
  /** Whether videos over 10 s get a `storyboard` output. */
  storyboard: boolean;
  typePolicy: TypePolicy;
  auth: AuthConfig;
  /** Lifetime of download links (signed links and S3 presigned redirects) and of event-stream links. */
  downloadLinkTtlMs: number;
  /** Silence after which an event stream sends a comment line, so proxies and clients keep it open. */
  eventsHeartbeatMs: number;
  quotas: QuotaConfig;
  authorize: AuthorizeConfig | undefined;
  webhooks: WebhookConfig | undefined;
  /** When set, /metrics answers only to `Authorization: Bearer <metricsToken>`. */
  metricsToken: string | undefined;
  /** Origins a page may call from; `['*']` for any. */
  corsOrigins: string[];
  http: HttpLimits;
}

/**
 * How the Postgres connections kept open outside the pool (the lock session, each LISTEN) make
 * sure the server still answers: TCP keepalive misses a path that stops forwarding without closing.
 */
export interface DatabaseHeartbeat {
  /** The wait between one `select 1` answering and the next being sent. */
  intervalMs: number;
  /** A query on such a connection (a heartbeat or any other) unanswered this long ends it; a new one replaces it. */
  timeoutMs: number;
}

export const defaultDatabaseHeartbeat: DatabaseHeartbeat = { intervalMs: 5_000, timeoutMs: 10_000 };

/** How tokens are verified: `open` means no tokens at all (anyone may upload). */
export type AuthConfig =
  | { mode: 'open'; /** AUTH=off was set on purpose. */ explicit: boolean }
  | {
      mode: 'token';
      key: TokenKey;
      issuer: string | undefined;
      audience: string | undefined;
      /** How long past `exp` a token may still resume its owner's unfinished upload. */
      resumeGraceMs: number;
      /** HMAC key of signed download links. */
      linkSecret: Buffer;
    };

export type TokenKey =
  | { kind: 'secret'; secret: Uint8Array }
  | { kind: 'publicKey'; key: KeyObject; algorithm: 'RS256' | 'ES256' | 'EdDSA' }
  | { kind: 'jwks'; url: URL };

export interface QuotaConfig {
  /** Unfinished, unexpired uploads one owner may have at once (0: no limit). */
  uploadsInFlight: number;
  /** Stored bytes one owner may have; undefined: no limit. */
  bytes: number | undefined;
}

/** The app's own check before an upload is created, signed the Standard Webhooks way. */
export interface AuthorizeConfig {
  url: string;
  timeoutMs: number;
  /** `whsec_…`, as the standardwebhooks library takes it. */
  secret: string;
}

/** Where upload events are POSTed (Standard Webhooks), and how hard each delivery is tried. */
export interface WebhookConfig {
  urls: string[];
  /** `whsec_…`, shared with AUTHORIZE_URL's signing. */
  secret: string;
  /** Absolute links in the event bodies: a worker has no request to take a host from. */
  publicUrl: string;
  timeoutMs: number;
  maxAttempts: number;
  /** The wait before the first retry; each later one waits twice as long as the one before. */
  retryDelayMs: number;
}

export interface HttpLimits {
  headersTimeoutMs: number;
  /** Requests that carry no upload bytes must have arrived whole within this. */
  requestTimeoutMs: number;
  /** Requests that carry upload bytes end after this long without a byte. */
  patchIdleTimeoutMs: number;
  /** How long a stopping server lets requests under way (slow PATCHes) finish before it closes their connections. */
  shutdownGraceMs: number;
  maxHeaderSize: number;
}

export interface S3Config {
  bucket: string;
  endpoint: string | undefined;
  /** The address presigned download links are made for, when browsers reach the bucket by another name than the server does. */
  publicEndpoint: string | undefined;
  region: string;
  accessKeyId: string | undefined;
  secretAccessKey: string | undefined;
  forcePathStyle: boolean;
  partSize: number;
  /** A part streamed to S3 whose bytes stop arriving this long goes on through a temp file (S3 closes idle requests). */
  streamIdleMs: number;
  /** Bytes of streamed parts kept in memory at once (in case a stream fails); past it they go to temp files. */
  streamBufferBytes: number;
  /** `WHEN_REQUIRED` for radosgw and older MinIO, which answer 411 to trailing checksums. */
  checksums: 'WHEN_SUPPORTED' | 'WHEN_REQUIRED';
  presignExpiresSeconds: number;
  /** Lifetime of what direct uploads are signed with (a part's PUT URL, a presigned POST's policy), in seconds. */
  directPresignSeconds: number;
}

// Declared by the clamd client: processors/ import nothing of the server.
export type { ClamdConfig };

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** One allowed file type: the MIME type file-type reports, its extensions and its size limit. */
export interface AllowedType {
  mime: string;
  extensions: string[];
  maxSize: number;
}
export type TypePolicy = AllowedType[];

const MiB = 1024 * 1024;

/** The seed's allow-list plus the common phone formats for pictures and video. */
const pictureAndDocumentTypes: TypePolicy = [
  { mime: 'image/jpeg', extensions: ['jpg', 'jpeg'], maxSize: 20 * MiB },
  { mime: 'image/png', extensions: ['png'], maxSize: 20 * MiB },
  { mime: 'image/webp', extensions: ['webp'], maxSize: 20 * MiB },
  // One family: HEIC, HEIF and their -sequence forms (see normaliseMime in hooks/typePolicy.ts).
  { mime: 'image/heic', extensions: ['heic', 'heif', 'hif'], maxSize: 30 * MiB },
  { mime: 'image/avif', extensions: ['avif'], maxSize: 30 * MiB },
  { mime: 'application/pdf', extensions: ['pdf'], maxSize: 50 * MiB },
  { mime: 'video/mp4', extensions: ['mp4', 'm4v'], maxSize: 500 * MiB },
  { mime: 'video/quicktime', extensions: ['mov', 'qt'], maxSize: 500 * MiB },
  { mime: 'video/webm', extensions: ['webm'], maxSize: 500 * MiB },
];

/**
 * Voice notes and music, each limited to MAX_AUDIO_SIZE. `audio/mp4` and `audio/webm` share their
 * containers with `video/mp4` and `video/webm` (see the families in hooks/typePolicy.ts).
 */
export function audioTypes(maxSize: number): TypePolicy {
  return [
    { mime: 'audio/mp4', extensions: ['m4a'], maxSize },
    { mime: 'audio/mpeg', extensions: ['mp3'], maxSize },
    { mime: 'audio/wav', extensions: ['wav'], maxSize },
    { mime: 'audio/ogg', extensions: ['ogg', 'opus', 'oga'], maxSize },
    { mime: 'audio/webm', extensions: ['webm', 'weba'], maxSize },
  ];
}
const defaultAudioMaxSize = 200 * MiB;

/** The seed's allow-list, the common phone formats and audio. */
export const defaultTypePolicy: TypePolicy = [...pictureAndDocumentTypes, ...audioTypes(defaultAudioMaxSize)];

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid settings:\n  ${problems.join('\n  ')}`);
    this.problems = problems;
  }
}

type Env = Record<string, string | undefined>;

/**
 * Reads settings from the environment; throws one ConfigError naming every bad value.
 * `settingsRead`, when given, collects the name of every setting looked at for this environment.
 */
export function loadConfig(env: Env = process.env, settingsRead?: Set<string>): Config {
  const problems: string[] = [];
  const read = new SettingReader(env, problems, settingsRead);

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

  const audioMaxSize = read.size('MAX_AUDIO_SIZE', defaultAudioMaxSize, 1);
  if (env.MAX_AUDIO_SIZE && env.TYPE_POLICY) problems.push('MAX_AUDIO_SIZE: TYPE_POLICY is set, give the audio limits there');
  const typePolicy = read.typePolicy('TYPE_POLICY', [...pictureAndDocumentTypes, ...audioTypes(audioMaxSize)]);
  const largestType = Math.max(...typePolicy.map((t) => t.maxSize));
  const auth = readAuth(read, problems);
  // S3_PRESIGN_EXPIRES is the older name of the same lifetime.
  const downloadLinkTtlMs = read.duration('DOWNLOAD_LINK_TTL', read.duration('S3_PRESIGN_EXPIRES', 300_000));
  if (downloadLinkTtlMs < 1000) problems.push('DOWNLOAD_LINK_TTL: must be at least 1s');
  const webhookSecret = read.string('WEBHOOK_SECRET');
  if (webhookSecret && !/^whsec_[A-Za-z0-9+/]+={0,2}$/.test(webhookSecret)) problems.push('WEBHOOK_SECRET: not whsec_ followed by base64');
  const authorizeUrl = read.url('AUTHORIZE_URL');
  if (authorizeUrl && !webhookSecret) problems.push('AUTHORIZE_URL: set WEBHOOK_SECRET too (its requests are signed with it)');
  const corsRaw = read.string('CORS_ORIGINS');
  const publicUrl = read.url('PUBLIC_URL');
  const webhooks = readWebhooks(read, problems, webhookSecret, publicUrl);

  const config: Config = {
    port: read.integer('PORT', 1080, 0, 65535),
    host: read.string('HOST') ?? '0.0.0.0',
    publicUrl,
    dataDir,
    databaseUrl: read.string('DATABASE_URL'),
    embeddedPostgresUser: read.string('EMBEDDED_POSTGRES_USER') ?? 'nobody',
    databaseHeartbeat: {
      intervalMs: read.duration('DATABASE_HEARTBEAT', defaultDatabaseHeartbeat.intervalMs),
      timeoutMs: read.duration('DATABASE_HEARTBEAT_TIMEOUT', defaultDatabaseHeartbeat.timeoutMs),
    },
    s3: s3Bucket
      ? {
          bucket: s3Bucket,
          endpoint: read.url('S3_ENDPOINT'),
          publicEndpoint: read.url('S3_PUBLIC_ENDPOINT'),
          region: read.string('S3_REGION') ?? 'us-east-1',
          accessKeyId: read.string('S3_ACCESS_KEY_ID'),
          secretAccessKey: read.string('S3_SECRET_ACCESS_KEY'),
          forcePathStyle: read.boolean('S3_FORCE_PATH_STYLE', false),
          partSize: read.size('S3_PART_SIZE', 8 * MiB, 5 * MiB),
          streamIdleMs: read.duration('S3_STREAM_IDLE', 10_000),
          streamBufferBytes: read.size('S3_STREAM_BUFFER', 64 * MiB, 0),
          checksums: read.oneOf('S3_CHECKSUMS', ['WHEN_SUPPORTED', 'WHEN_REQUIRED'] as const, 'WHEN_REQUIRED'),
          presignExpiresSeconds: Math.round(downloadLinkTtlMs / 1000),
          directPresignSeconds: Math.round(read.duration('S3_PRESIGN_TTL', 15 * 60_000) / 1000),
        }
      : undefined,
    clamd,
    scan,
    scanWaitMaxMs: read.duration('SCAN_WAIT_MAX', 24 * 3600_000),
    storeWaitMaxMs: read.duration('STORE_WAIT_MAX', 24 * 3600_000),
    maxUploadSize: read.size('MAX_UPLOAD_SIZE', largestType, 1),
    uploadExpiresAfterMs: read.duration('UPLOAD_EXPIRES_AFTER', 24 * 3600_000),
    idempotencyTtlMs: read.duration('IDEMPOTENCY_TTL', 24 * 3600_000),
    workerThreads: read.integer('WORKER_THREADS', os.availableParallelism(), 1, 256),
    logLevel: read.oneOf('LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info'),
    jobLeaseMs: read.duration('JOB_LEASE', 60_000),
    jobPollMs: read.duration('JOB_POLL_INTERVAL', 1_000),
    jobMaxAttempts: read.integer('JOB_MAX_ATTEMPTS', 5, 1, 100),
    runJobs: read.boolean('RUN_JOBS', true),
    cleanupIntervalMs: read.duration('CLEANUP_INTERVAL', 15 * 60_000),
    failedRetentionMs: read.duration('FAILED_RETENTION', 7 * 24 * 3600_000),
    retention: {
      deletedUploadsMs: read.duration('DELETED_RETENTION', 30 * 24 * 3600_000),
      webhookMessagesMs: read.duration('WEBHOOK_RETENTION', 30 * 24 * 3600_000),
      jobsMs: read.duration('JOB_RETENTION', 30 * 24 * 3600_000),
      eventsMs: read.duration('EVENT_RETENTION', 30 * 24 * 3600_000),
    },
    rateLimitPerMinute: read.integer('RATE_LIMIT_UPLOADS', 60, 0, 1_000_000),
    // 100 megapixels: above any phone or DSLR photo, far below what fills memory when decoded.
    maxImagePixels: read.integer('MAX_IMAGE_PIXELS', 100_000_000, 1, 2 ** 31),
    // 8K UHD: larger frames are refused before ffmpeg decodes one (each costs memory per frame in flight).
    maxVideoPixels: read.integer('MAX_VIDEO_PIXELS', 7680 * 4320, 1, 2 ** 31),
    videoTimeoutMs: read.duration('VIDEO_TIMEOUT', 30 * 60_000),
    hls: readHls(read, problems),
    hlsLinkTtlMs: read.duration('HLS_LINK_TTL', 6 * 3600_000),
    storyboard: read.oneOf('STORYBOARD', ['on', 'off'] as const, 'on') === 'on',
    // Far above what heif-convert needs for a phone's photo: minutes mean a stuck decoder.
    imageTimeoutMs: read.duration('IMAGE_TIMEOUT', 2 * 60_000),
    // What phone and podcast apps play at; EBU R128 broadcast is -23.
    audioLoudness: read.integer('AUDIO_LOUDNESS', -16, -70, -5),
    waveformPoints: read.integer('WAVEFORM_POINTS', 1000, 10, 100_000),
    audioTimeoutMs: read.duration('AUDIO_TIMEOUT', 10 * 60_000),
    typePolicy,
    auth,
    downloadLinkTtlMs,
    eventsHeartbeatMs: read.duration('EVENTS_HEARTBEAT', 15_000),
    quotas: {
      uploadsInFlight: read.integer('QUOTA_UPLOADS_IN_FLIGHT', 20, 0, 1_000_000),
      bytes: read.string('QUOTA_BYTES') === undefined ? undefined : read.size('QUOTA_BYTES', 0, 1),
    },
    authorize: authorizeUrl && webhookSecret ? { url: authorizeUrl, timeoutMs: read.duration('AUTHORIZE_TIMEOUT', 5_000), secret: webhookSecret } : undefined,
    webhooks,
    metricsToken: read.string('METRICS_TOKEN'),
    // Open: any page may call. With tokens: only the origins named (a token in a page is a credential).
    corsOrigins: corsRaw ? corsRaw.split(',').map((o) => o.trim()).filter(Boolean) : auth.mode === 'open' ? ['*'] : [],
    http: {
      headersTimeoutMs: read.duration('HEADERS_TIMEOUT', 20_000),
      requestTimeoutMs: read.duration('REQUEST_TIMEOUT', 30_000),
      patchIdleTimeoutMs: read.duration('PATCH_IDLE_TIMEOUT', 60_000),
      shutdownGraceMs: read.duration('SHUTDOWN_GRACE', 10_000),
      maxHeaderSize: read.size('MAX_HEADER_SIZE', 16 * 1024, 1024),
    },
  };
  if (config.hlsLinkTtlMs < 60_000) problems.push('HLS_LINK_TTL: must be at least 1m (players fetch segments for as long as they play)');
  if (config.eventsHeartbeatMs < 100) problems.push('EVENTS_HEARTBEAT: must be at least 100ms');
  if (config.databaseHeartbeat.intervalMs < 100) problems.push('DATABASE_HEARTBEAT: must be at least 100ms');
  if (config.databaseHeartbeat.timeoutMs < 100) problems.push('DATABASE_HEARTBEAT_TIMEOUT: must be at least 100ms');
  // Shorter, and a client's ordinary pause between two TCP windows would end a part's stream.
  if (config.s3 && config.s3.streamIdleMs < 1000) problems.push('S3_STREAM_IDLE: must be at least 1s');
  // SigV4 presigned URLs live from 1 s to 7 days.
  if (config.s3 && (config.s3.directPresignSeconds < 1 || config.s3.directPresignSeconds > 7 * 86_400)) problems.push('S3_PRESIGN_TTL: must be from 1s to 7d');
  if (config.databaseUrl && env.EMBEDDED_POSTGRES_USER) problems.push('EMBEDDED_POSTGRES_USER: there is no embedded database with DATABASE_URL set');
  if (!s3Bucket) {
    for (const name of ['S3_ENDPOINT', 'S3_PUBLIC_ENDPOINT', 'S3_ACCESS_KEY_ID', 'S3_SECRET_ACCESS_KEY', 'S3_PART_SIZE', 'S3_STREAM_IDLE', 'S3_STREAM_BUFFER', 'S3_PRESIGN_TTL']) {
      if (env[name]) problems.push(`${name}: set S3_BUCKET too, or the folder store is used`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/**
 * WEBHOOK_URL (comma-separated http(s) URLs) with WEBHOOK_SECRET and PUBLIC_URL. The retries'
 * defaults (10 attempts, 30 s doubling) span about four hours: an app down for a deploy or a
 * night's outage still gets every event.
 */
function readWebhooks(read: SettingReader, problems: string[], secret: string | undefined, publicUrl: string | undefined): WebhookConfig | undefined {
  const urls = read.urlList('WEBHOOK_URL');
  const timeoutMs = read.duration('WEBHOOK_TIMEOUT', 10_000);
  const maxAttempts = read.integer('WEBHOOK_MAX_ATTEMPTS', 10, 1, 100);
  const retryDelayMs = read.duration('WEBHOOK_RETRY_DELAY', 30_000);
  if (urls.length === 0) {
    for (const name of ['WEBHOOK_TIMEOUT', 'WEBHOOK_MAX_ATTEMPTS', 'WEBHOOK_RETRY_DELAY']) {
      if (read.string(name) !== undefined) problems.push(`${name}: set WEBHOOK_URL too (there are no webhooks without it)`);
    }
    return undefined;
  }
  if (!secret) problems.push('WEBHOOK_URL: set WEBHOOK_SECRET too (every webhook is signed with it)');
  if (!publicUrl) problems.push('WEBHOOK_URL: set PUBLIC_URL too (webhook bodies carry absolute links, and a worker has no request to build them from)');
  if (timeoutMs < 1) problems.push('WEBHOOK_TIMEOUT: must be more than 0');
  if (retryDelayMs < 1) problems.push('WEBHOOK_RETRY_DELAY: must be more than 0');
  if (!secret || !publicUrl) return undefined;
  return { urls, secret, publicUrl, timeoutMs, maxAttempts, retryDelayMs };
}

/**
 * 1080p, 720p and 360p (Apple's guide has 480p too: each lower rung is a whole encode, and
 * without it the job stays within 1.6x the mp4-only job's CPU — docs/configuration.md), each
 * rung's cap about twice what typical content needs at CRF 23: the top one is the mp4's own
 * cap, so the two are one encode.
 */
const defaultLadder = '1080:8M,720:4M,360:1M';

/** HLS (on|off), HLS_LADDER (`<short side>:<max bit rate>`, comma-separated), HLS_SEGMENT. */
function readHls(read: SettingReader, problems: string[]): HlsSettings | undefined {
  const on = read.oneOf('HLS', ['on', 'off'] as const, 'on') === 'on';
  const rawLadder = read.string('HLS_LADDER') ?? defaultLadder;
  const segmentSeconds = read.duration('HLS_SEGMENT', 6_000) / 1000;
  const ladder: Rung[] = [];
  for (const item of rawLadder.split(',').map((part) => part.trim())) {
    const match = /^(\d{2,4}):(\d+(?:\.\d+)?)([kM])$/.exec(item);
    const shortSide = Number(match?.[1]);
    if (!match || shortSide < 144 || shortSide > 2160 || shortSide % 2 !== 0) {
      problems.push(`HLS_LADDER: "${item}" is not <even short side from 144 to 2160>:<bit rate with k or M>, e.g. ${defaultLadder}`);
      continue;
    }
    ladder.push({ shortSide, maxrate: Math.round(Number(match[2]) * (match[3] === 'M' ? 1_000_000 : 1_000)) });
  }
  if (new Set(ladder.map((rung) => rung.shortSide)).size !== ladder.length) problems.push('HLS_LADDER: each short side only once');
  if (segmentSeconds < 1 || segmentSeconds > 20 || !Number.isInteger(segmentSeconds)) problems.push('HLS_SEGMENT: whole seconds from 1s to 20s (Apple asks for 6s)');
  return on && ladder.length > 0 ? { ladder, segmentSeconds } : undefined;
}

const authSettings = ['AUTH_SECRET', 'AUTH_PUBLIC_KEY', 'AUTH_JWKS_URL'] as const;

/** AUTH_SECRET, AUTH_PUBLIC_KEY or AUTH_JWKS_URL (one of them), or open; open is refused in production unless AUTH=off. */
function readAuth(read: SettingReader, problems: string[]): AuthConfig {
  const given = authSettings.filter((name) => read.string(name) !== undefined);
  const production = read.string('NODE_ENV') === 'production';
  const off = read.string('AUTH')?.toLowerCase() === 'off';
  if (read.string('AUTH') !== undefined && !off) problems.push(`AUTH: "${read.string('AUTH')}" is not off (leave it unset to verify tokens)`);
  if (given.length > 1) problems.push(`${given.join(', ')}: set only one way to verify tokens`);
  if (off && given.length > 0) problems.push(`AUTH: off contradicts ${given.join(', ')}`);
  if (given.length === 0 || off) {
    if (!off && production) {
      problems.push('AUTH_SECRET: required when NODE_ENV=production (or AUTH_PUBLIC_KEY / AUTH_JWKS_URL; AUTH=off runs open on purpose)');
    }
    if (read.string('LINK_SECRET')) problems.push('LINK_SECRET: links are signed only when tokens are verified (set AUTH_SECRET, AUTH_PUBLIC_KEY or AUTH_JWKS_URL)');
    return { mode: 'open', explicit: off };
  }
  const key = readTokenKey(read, problems);
  const linkSecretRaw = read.string('LINK_SECRET');
  if (linkSecretRaw !== undefined && Buffer.byteLength(linkSecretRaw) < 32) problems.push('LINK_SECRET: must be at least 32 bytes');
  let linkSecret: Buffer;
  if (linkSecretRaw) linkSecret = Buffer.from(linkSecretRaw, 'utf8');
  else if (key?.kind === 'secret') linkSecret = Buffer.from(hkdfSync('sha256', key.secret, Buffer.alloc(0), 'tus-upload-server download links', 32));
  else {
    problems.push('LINK_SECRET: required when tokens are verified with a public key (a public key cannot sign links)');
    linkSecret = Buffer.alloc(0);
  }
  return {
    mode: 'token',
    key: key ?? { kind: 'secret', secret: new Uint8Array() },
    issuer: read.string('AUTH_ISSUER'),
    audience: read.string('AUTH_AUDIENCE'),
    resumeGraceMs: read.duration('AUTH_RESUME_GRACE', 24 * 3600_000),
    linkSecret,
  };
}

function readTokenKey(read: SettingReader, problems: string[]): TokenKey | undefined {
  const secret = read.string('AUTH_SECRET');
  if (secret !== undefined) {
    // The UTF-8 bytes of the string, as `new TextEncoder().encode(secret)` gives an app using jose.
    const bytes = new TextEncoder().encode(secret);
    if (bytes.length < 32) problems.push(`AUTH_SECRET: must be at least 32 bytes (HS256), got ${bytes.length}`);
    return { kind: 'secret', secret: bytes };
  }
  const pem = read.string('AUTH_PUBLIC_KEY');
  if (pem !== undefined) {
    try {
      // The PEM itself (with \n escapes allowed, as .env files write it), or the path of a PEM file.
      const text = pem.includes('-----BEGIN') ? pem.replaceAll('\\n', '\n') : readFileSync(pem, 'utf8');
      const key = createPublicKey(text);
      const algorithm = algorithmOf(key);
      if (algorithm) return { kind: 'publicKey', key, algorithm };
      problems.push(`AUTH_PUBLIC_KEY: a ${key.asymmetricKeyType} key is not supported (RSA for RS256, EC P-256 for ES256, Ed25519 for EdDSA)`);
    } catch (error) {
      problems.push(`AUTH_PUBLIC_KEY: not a PEM public key or a file holding one (${(error as Error).message})`);
    }
    return undefined;
  }
  const url = read.url('AUTH_JWKS_URL');
  return url ? { kind: 'jwks', url: new URL(url) } : undefined;
}

/** The one JWS algorithm a public key verifies: the key decides, never the token's header. */
export function algorithmOf(key: KeyObject): 'RS256' | 'ES256' | 'EdDSA' | undefined {
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  return undefined;
}

/** Parses one kind of value per method and records a message naming the setting when it is bad. */
class SettingReader {
  private readonly env: Env;
  private readonly problems: string[];
  private readonly namesRead?: Set<string>;

  constructor(
    env: Env,
    problems: string[],
    namesRead?: Set<string>,
  ) {
    this.env = env;
    this.problems = problems;
    this.namesRead = namesRead;
  }

  /** Every other reader goes through here, so `namesRead` sees every setting looked at. */
  string(name: string): string | undefined {
    this.namesRead?.add(name);
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

  /** A comma-separated list of http(s) URLs; each bad one is named. */
  urlList(name: string): string[] {
    const raw = this.string(name);
    if (raw === undefined) return [];
    const urls: string[] = [];
    for (const entry of raw.split(',').map((u) => u.trim()).filter(Boolean)) {
      const url = URL.canParse(entry) ? new URL(entry) : undefined;
      if (url?.protocol === 'http:' || url?.protocol === 'https:') urls.push(url.toString());
      else this.problems.push(`${name}: "${entry}" is not an http(s) URL`);
    }
    if (urls.length !== new Set(urls).size) this.problems.push(`${name}: a URL is listed twice (each would get every event twice)`);
    return urls;
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

  /**
   * Durations carry a unit: `500ms`, `30s`, `15m`, `24h`, `7d`. A bare number (but 0) is refused:
   * read as milliseconds, `UPLOAD_EXPIRES_AFTER=86400` (meant as a day in seconds) would be 86 seconds.
   */
  duration(name: string, fallbackMs: number): number {
    const raw = this.string(name);
    if (raw === undefined) return fallbackMs;
    const ms = parseDuration(raw);
    if (ms === undefined) {
      const bare = /^\d+(\.\d+)?$/.test(raw);
      this.problems.push(
        bare
          ? `${name}: "${raw}" has no unit; write ${raw}ms or ${raw}s (units: ms, s, m, h, d)`
          : `${name}: "${raw}" is not a duration (e.g. 30s, 15m, 24h)`,
      );
      return fallbackMs;
    }
    return ms;
  }

  /** TYPE_POLICY: `mime:ext|ext:size,…`, e.g. `image/jpeg:jpg|jpeg:20MiB,application/pdf:pdf:50MiB`. */
  typePolicy(name: string, fallback: TypePolicy): TypePolicy {
    const raw = this.string(name);
    if (raw === undefined) return fallback;
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
    return policy.length > 0 ? policy : fallback;
  }
}

const sizeUnits: Record<string, number> = {
  '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: MiB, gib: 1024 * MiB,
};
const durationUnits: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

function parseWithUnit(raw: string, units: Record<string, number>): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(raw.trim());
  const factor = match ? units[match[2]!.toLowerCase()] : undefined;
  if (!match || factor === undefined) return undefined;
  return Math.round(Number(match[1]) * factor);
}

export const parseSize = (raw: string) => parseWithUnit(raw, sizeUnits);
/** A duration needs its unit, except zero (the same in every unit: `AUTH_RESUME_GRACE=0` turns the grace off). */
export const parseDuration = (raw: string) => (/^0+$/.test(raw.trim()) ? 0 : parseWithUnit(raw, durationUnits));
