import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../server/infra/settings/config.ts';
import { cleanUpExpired } from '../server/jobs/cleanup.ts';
import type { RunningServer } from '../server/main/start.ts';
import { eventually } from './support/eventually.ts';
import { pdf } from './support/samples.ts';
import { createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';
import { receiverWithSettings, type WebhookReceiver } from './support/webhookReceiver.ts';

const day = 24 * 3600_000;

describe('retention settings', () => {
  it('default to 30 days each and take durations', () => {
    expect(loadConfig({}).retention).toEqual({ deletedUploadsMs: 30 * day, webhookMessagesMs: 30 * day, jobsMs: 30 * day, eventsMs: 30 * day });
    expect(loadConfig({ DELETED_RETENTION: '1d', WEBHOOK_RETENTION: '2d', JOB_RETENTION: '3d', EVENT_RETENTION: '12h' }).retention).toEqual({
      deletedUploadsMs: day,
      webhookMessagesMs: 2 * day,
      jobsMs: 3 * day,
      eventsMs: day / 2,
    });
  });

  it('name every bad value at once', () => {
    expect(() => loadConfig({ DELETED_RETENTION: 'soon', EVENT_RETENTION: '-1d' })).toThrow(/DELETED_RETENTION[\s\S]*EVENT_RETENTION/);
  });
});

/**
 * The cleanup's retentions on a real database: the clock is the cleanup's (`now`), moved past
 * the retentions, never the wall's.
 */
describe('retentions applied by the cleanup (scaleout)', () => {
  let environment: TestEnvironment;
  let server: RunningServer;
  let receiver: WebhookReceiver;

  beforeAll(async () => {
    let settings: Record<string, string>;
    ({ receiver, settings } = await receiverWithSettings());
    // Cleanup runs by hand here: the server's own schedule must not race it.
    environment = await createTestEnvironment('scaleout', { ...settings, CLEANUP_INTERVAL: '1h' });
    server = await startTestServer(environment);
  });
  afterAll(async () => {
    await server?.close();
    await receiver?.stop();
    await environment?.destroy();
  });

  const rowsOf = async (id: string) => {
    const { db } = server.services.context;
    const count = async (table: 'uploads' | 'upload_events' | 'jobs' | 'webhook_messages' | 'outputs', column: 'id' | 'upload_id') =>
      Number((await db.selectFrom(table).select(db.fn.countAll().as('n')).where(column, '=', id).executeTakeFirstOrThrow()).n);
    return {
      uploads: await count('uploads', 'id'),
      events: await count('upload_events', 'upload_id'),
      jobs: await count('jobs', 'upload_id'),
      webhookMessages: await count('webhook_messages', 'upload_id'),
    };
  };

  it('forgets what is past its retention, in batches, and keeps what is still needed', async () => {
    const { db } = server.services.context;
    const kept = uploadIdOf((await tusUpload(server.url, pdf(4096), { filename: 'kept.pdf' })).url);
    const removed = uploadIdOf((await tusUpload(server.url, pdf(4096), { filename: 'removed.pdf' })).url);
    for (const id of [kept, removed]) expect((await waitUntilSettled(server.url, id)).status).toBe('ready');
    expect((await fetch(`${server.url}/api/uploads/${removed}`, { method: 'DELETE' })).status).toBe(204);
    // Every delivery done: nothing is held back by a job still to run.
    await eventually('every webhook delivered', async () => {
      const { n } = await db.selectFrom('jobs').select(db.fn.countAll().as('n')).where('status', 'in', ['queued', 'running']).executeTakeFirstOrThrow();
      return Number(n) === 0;
    });
    // A long history: more events than one batch deletes.
    const { event_seq: seq } = await db.selectFrom('uploads').select('event_seq').where('id', '=', kept).executeTakeFirstOrThrow();
    const extra = 2500;
    await sql`insert into upload_events (upload_id, seq, from_status, to_status)
              select ${kept}, s, 'ready', 'ready' from generate_series(${seq + 1}::int, ${seq + extra}::int) s`.execute(db);
    await db.updateTable('uploads').set({ event_seq: seq + extra }).where('id', '=', kept).execute();
    // A delivery of kept's creation still retrying: its message, and the event it tells of, stay.
    const pending = await db
      .selectFrom('jobs')
      .innerJoin('webhook_messages', 'webhook_messages.id', 'jobs.webhook_id')
      .select(['jobs.id', 'webhook_messages.seq'])
      .where('jobs.upload_id', '=', kept)
      .where('webhook_messages.type', '=', 'upload.created')
      .executeTakeFirstOrThrow();
    await db.updateTable('jobs').set({ status: 'queued', run_after: new Date(Date.now() + 365 * day) }).where('id', '=', pending.id).execute();
    const before = { kept: await rowsOf(kept), removed: await rowsOf(removed) };
    expect(before.removed).toMatchObject({ uploads: 1, events: expect.any(Number), webhookMessages: expect.any(Number) });
    expect(before.removed.webhookMessages).toBeGreaterThan(0);

    // Within the retentions: nothing is forgotten (the deleted upload's leftovers are reclaimed).
    const early = await cleanUpExpired(server.services.context, { now: new Date(Date.now() + 29 * day) });
    expect(early).toMatchObject({ uploadRows: 0, webhookRows: 0, jobRows: 0, eventRows: 0 });
    expect({ kept: await rowsOf(kept), removed: await rowsOf(removed) }).toEqual(before);

    const late = await cleanUpExpired(server.services.context, { now: new Date(Date.now() + 31 * day) });
    expect(await rowsOf(removed)).toEqual({ uploads: 0, events: 0, jobs: 0, webhookMessages: 0 });
    expect((await fetch(`${server.url}/api/uploads/${removed}`)).status).toBe(404);
    // kept: the latest event and the pending delivery's event, its message and job; nothing else.
    expect(await rowsOf(kept)).toEqual({ uploads: 1, events: 2, jobs: 1, webhookMessages: 1 });
    const events = await db.selectFrom('upload_events').select('seq').where('upload_id', '=', kept).orderBy('seq').execute();
    expect(events.map((e) => e.seq)).toEqual([pending.seq, seq + extra]);
    expect(late.uploadRows).toBe(1);
    expect(late.eventRows).toBe(before.kept.events - 2);
    // Its done deliveries went with their messages; the rest are pipeline jobs.
    expect(late.jobRows).toBe(before.kept.jobs - before.kept.webhookMessages);
    expect(late.webhookRows).toBe(before.kept.webhookMessages - 1);
    expect((await waitUntilSettled(server.url, kept)).status).toBe('ready');

    // Once the delivery is over, its message and event go too.
    await db.updateTable('jobs').set({ status: 'done' }).where('id', '=', pending.id).execute();
    expect(await cleanUpExpired(server.services.context, { now: new Date(Date.now() + 61 * day) })).toMatchObject({ webhookRows: 1, eventRows: 1 });
    expect(await rowsOf(kept)).toEqual({ uploads: 1, events: 1, jobs: 0, webhookMessages: 0 });
  }, 120_000);
});
