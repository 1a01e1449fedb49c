import { randomUUID } from 'node:crypto';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../server/infra/db/schema.ts';
import { createLogger } from '../server/infra/settings/log.ts';
import { createMetrics } from '../server/http/metrics.ts';
import type { RunningServer } from '../server/main/start.ts';
import { eventually } from './support/eventually.ts';
import { pdf } from './support/samples.ts';
import { createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';

/** The value of the first sample named `name` whose labels include `labels`; undefined when none. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match?.[1] !== name) continue;
    const has = new Map([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map(([, key, value]) => [key, value]));
    if (Object.entries(labels).every(([key, value]) => has.get(key) === value)) return Number(match[3]);
  }
  return undefined;
}

async function scrape(server: RunningServer): Promise<string> {
  const res = await fetch(`${server.url}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

describe('GET /metrics', () => {
  let environment: TestEnvironment;
  let server: RunningServer;

  beforeAll(async () => {
    environment = await createTestEnvironment('embedded');
    server = await startTestServer(environment);
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
  });

  it('answers in the Prometheus text format with the process metrics', async () => {
    const res = await fetch(`${server.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(sample(text, 'nodejs_eventloop_lag_seconds')).toBeGreaterThanOrEqual(0);
  });

  it('counts the upload, its tus requests and its inspect job', async () => {
    const patch = { route: 'tus', method: 'PATCH', code: '2xx' };
    const patchesBefore = sample(await scrape(server), 'upload_server_http_request_duration_seconds_count', patch) ?? 0;

    const { url } = await tusUpload(server.url, pdf(200_000), { filename: 'report.pdf', filetype: 'application/pdf', chunkSize: 64 * 1024 });
    expect((await waitUntilSettled(server.url, uploadIdOf(url))).status).toBe('ready');

    const text = await eventually('the inspect job in the histogram', async () => {
      const text = await scrape(server);
      return (sample(text, 'upload_server_job_duration_seconds_count', { kind: 'inspect', outcome: 'done' }) ?? 0) >= 1 && text;
    });
    expect(sample(text, 'upload_server_uploads', { status: 'ready' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'upload_server_uploads', { status: 'infected' })).toBe(0);
    // 200 kB in 64 KiB chunks: four PATCHes.
    expect(sample(text, 'upload_server_http_request_duration_seconds_count', patch)).toBeGreaterThanOrEqual(patchesBefore + 4);
    expect(sample(text, 'upload_server_http_request_duration_seconds_count', { route: 'api', method: 'GET', code: '2xx' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'upload_server_jobs', { kind: 'inspect', status: 'done' })).toBeGreaterThanOrEqual(1);
  });

  it('labels paths by route group and unknown override methods as other, never by id', async () => {
    await fetch(`${server.url}/api/uploads/${randomUUID()}`);
    await fetch(`${server.url}/files/${randomUUID()}`, { method: 'POST', headers: { 'X-HTTP-Method-Override': 'BREW', 'Tus-Resumable': '1.0.0' } });
    const text = await scrape(server);
    expect(sample(text, 'upload_server_http_request_duration_seconds_count', { route: 'api', code: '4xx' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'upload_server_http_request_duration_seconds_count', { route: 'tus', method: 'other' })).toBeGreaterThanOrEqual(1);
    expect(text).not.toMatch(/BREW|[0-9a-f]{8}-[0-9a-f]{4}-/);
  });

  async function queueImageJob(runAfterSeconds: number): Promise<void> {
    const db = server.services.database.db;
    const id = randomUUID().replaceAll('-', '');
    await db.insertInto('uploads').values({ id, safe_filename: 'photo.png', storage_key: id, status: 'processing', tus_metadata: '{}', size: 10 }).execute();
    await db
      .insertInto('jobs')
      .values({ upload_id: id, kind: 'image', max_attempts: 3, run_after: sql<Date>`now() + ${runAfterSeconds} * interval '1 second'` })
      .execute();
  }

  it('counts only the queued jobs that may run now in the queue lag', async () => {
    // As with RUN_JOBS=false: nothing claims the jobs queued below.
    await server.runner?.stop();
    await queueImageJob(3600);
    let text = await scrape(server);
    expect(sample(text, 'upload_server_jobs', { kind: 'image', status: 'queued' })).toBe(1);
    expect(sample(text, 'upload_server_job_queue_lag_seconds', { kind: 'image' })).toBe(0);

    const queuedAt = Date.now();
    await queueImageJob(-600);
    text = await scrape(server);
    const elapsedSeconds = (Date.now() - queuedAt) / 1000;
    expect(sample(text, 'upload_server_jobs', { kind: 'image', status: 'queued' })).toBe(2);
    const lag = sample(text, 'upload_server_job_queue_lag_seconds', { kind: 'image' });
    expect(lag).toBeGreaterThanOrEqual(600);
    expect(lag).toBeLessThanOrEqual(600 + elapsedSeconds + 1);
    expect(sample(text, 'upload_server_job_queue_lag_seconds', { kind: 'video' })).toBe(0);
  });
});

describe('/metrics without its database', () => {
  it('still renders the process metrics and leaves the database gauges out', async () => {
    // Nothing listens on port 1: every query fails at once.
    const pool = new pg.Pool({ connectionString: 'postgres://nobody@127.0.0.1:1/none' });
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    try {
      const text = await createMetrics(db, createLogger('silent')).scrape();
      expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(0);
      expect(sample(text, 'upload_server_uploads')).toBeUndefined();
      expect(sample(text, 'upload_server_job_queue_lag_seconds')).toBeUndefined();
    } finally {
      await db.destroy();
    }
  });
});
