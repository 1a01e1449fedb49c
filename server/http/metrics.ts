import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Db } from '../infra/db/database.ts';
import { countJobs } from '../infra/db/jobQueue.ts';
import { countUploadsByStatus } from '../infra/db/records.ts';
import { jobKinds, jobStatuses, uploadStatuses, type JobKind } from '../infra/db/schema.ts';
import type { JobEnd } from '../jobs/jobRunner.ts';
import type { Logger } from '../infra/settings/log.ts';
import { tusPath } from '../../hooks/uploadStatusJson.ts';
import type { Concatenated } from '../infra/store/storage.ts';

/** What GET /metrics shows: this process's runtime, requests and jobs, and the database's uploads and queue. */
export interface Metrics {
  contentType: string;
  /** The Prometheus text of every metric, the database gauges read now. */
  scrape(): Promise<string>;
  observeRequest(method: string, path: string, status: number, seconds: number): void;
  observeJob(kind: JobKind, end: JobEnd, seconds: number): void;
  /** Where a final upload's bytes went when its partial uploads were concatenated. */
  observeConcatenation(result: Concatenated): void;
}

const prefix = 'upload_server_';

// X-HTTP-Method-Override lets a client make any word the method: others share one label.
const knownMethods = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** Route groups, not paths: upload ids in a label would make a series per upload. */
function routeOf(path: string): string {
  if (path === tusPath || path.startsWith(`${tusPath}/`)) return 'tus';
  if (path.startsWith('/api/')) return 'api';
  if (path.startsWith('/s3/')) return 'direct';
  if (path === '/healthz' || path === '/readyz') return 'health';
  if (path === '/metrics') return 'metrics';
  if (path === '/' || path.startsWith('/assets/')) return 'demo';
  return 'other';
}

/** A registry of the app's own: tests run several servers in one process. */
export function createMetrics(db: Db, log: Logger): Metrics {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });

  const requestLabels = ['route', 'method', 'code'] as const;
  const requestSeconds = new Histogram({
    name: `${prefix}http_request_duration_seconds`,
    help: 'Time to answer an HTTP request (a tus PATCH includes receiving its body); its _count counts the requests.',
    labelNames: requestLabels,
    buckets: [0.01, 0.05, 0.25, 1, 5, 30, 120],
    registers,
  });
  const jobSeconds = new Histogram({
    name: `${prefix}job_duration_seconds`,
    help: 'Time a job run took in this process, by kind and how it ended (done, retry, failed).',
    labelNames: ['kind', 'outcome'],
    buckets: [0.1, 0.5, 2, 10, 60, 300, 1800],
    registers,
  });
  const uploads = new Gauge({ name: `${prefix}uploads`, help: 'Uploads in the database by status.', labelNames: ['status'], registers });
  const jobs = new Gauge({ name: `${prefix}jobs`, help: 'Jobs in the database by kind and status.', labelNames: ['kind', 'status'], registers });
  const queueLag = new Gauge({
    name: `${prefix}job_queue_lag_seconds`,
    help: 'How long the oldest queued job that may run (run_after passed) has waited, by kind; 0 when none waits.',
    labelNames: ['kind'],
    registers,
  });

  const concatenatedBytes = new Counter({
    name: `${prefix}concatenated_bytes_total`,
    help: 'Bytes of final uploads (tus concatenation): copied inside the store (S3 UploadPartCopy), or read and written by this process.',
    labelNames: ['path'],
    registers,
  });
  for (const path of ['in_store', 'through_server']) concatenatedBytes.inc({ path }, 0);

  // The jobs and lag gauges come from one query, so the database is read before rendering
  // rather than in a collect() per gauge (prom-client runs those independently).
  async function readDatabase(): Promise<void> {
    // A failed read still lets the scrape answer: the process metrics matter most when the
    // database is down. The database gauges are then left out rather than shown stale.
    const counts = await Promise.all([countUploadsByStatus(db), countJobs(db)]).catch((err: unknown) => {
      log.warn({ err }, 'reading the database failed');
      return undefined;
    });
    for (const gauge of [uploads, jobs, queueLag]) gauge.reset();
    if (!counts) return;
    const [uploadCounts, jobCounts] = counts;
    // Every known label shows, at 0 when empty: an alert on a series needs it to exist.
    for (const status of uploadStatuses) uploads.set({ status }, 0);
    for (const { status, count } of uploadCounts) uploads.set({ status }, count);
    for (const kind of jobKinds) {
      queueLag.set({ kind }, 0);
      for (const status of jobStatuses) jobs.set({ kind, status }, 0);
    }
    for (const { kind, status, count, waitedSeconds } of jobCounts) {
      jobs.set({ kind, status }, count);
      if (waitedSeconds !== null) queueLag.set({ kind }, waitedSeconds);
    }
  }

  return {
    contentType: registry.contentType,
    scrape: async () => {
      await readDatabase();
      return registry.metrics();
    },
    observeRequest: (method, path, status, seconds) => {
      const labels = { route: routeOf(path), method: knownMethods.has(method) ? method : 'other', code: `${Math.floor(status / 100)}xx` };
      requestSeconds.observe(labels, seconds);
    },
    observeJob: (kind, outcome, seconds) => jobSeconds.observe({ kind, outcome }, seconds),
    observeConcatenation: ({ copiedInStore, passedThrough }) => {
      concatenatedBytes.inc({ path: 'in_store' }, copiedInStore);
      concatenatedBytes.inc({ path: 'through_server' }, passedThrough);
    },
  };
}
