import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../server/infra/settings/config.ts';
import type { RunningServer } from '../server/main/start.ts';
import { killAll, startServerProcess } from './support/processes.ts';
import { eventually } from './support/eventually.ts';
import { freePort } from './support/freePort.ts';
import { pdf, png } from './support/samples.ts';
import { createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { createTusUpload, request } from './support/tusRequests.ts';
import { fetchStatus, tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';
import { startWebhookReceiver, webhookSecret, type Delivery, type WebhookReceiver } from './support/webhookReceiver.ts';

/**
 * Signed webhooks, end to end: a real server (in this process, or as a child process that is
 * SIGKILLed) delivers to a real receiver, which verifies every request with the standardwebhooks
 * library. Retries wait WEBHOOK_RETRY_DELAY doubling, set short here: real time passes, none is mocked.
 */

const secret = webhookSecret();

/**
 * Settings for a server on a port of its own, known before it starts: PUBLIC_URL is also where
 * tus clients are sent (Location), so it must be the server's real address.
 */
async function webhookSettings(receiver: WebhookReceiver, more: Record<string, string> = {}): Promise<Record<string, string>> {
  const port = await freePort();
  return {
    PORT: String(port),
    PUBLIC_URL: `http://127.0.0.1:${port}`,
    WEBHOOK_URL: receiver.url,
    WEBHOOK_SECRET: secret,
    WEBHOOK_RETRY_DELAY: '100ms',
    WEBHOOK_MAX_ATTEMPTS: '30',
    ...more,
  };
}

/** Uploads a small clean PNG with tus-js-client and waits for it to settle; returns its id. */
async function uploadClean(server: RunningServer | { url: string }, metadata: Record<string, string> = {}): Promise<string> {
  const { url } = await tusUpload(server.url, png(64, 48), { filename: 'clean.png', filetype: 'image/png', metadata });
  const id = uploadIdOf(url);
  expect((await waitUntilSettled(server.url, id, 60_000)).status).toBe('ready');
  return id;
}

const types = (deliveries: Delivery[]) => deliveries.map((d) => d.payload.type);

/** Each event's deliveries, by webhook-id: the same id must always carry the same body. */
function byWebhookId(deliveries: Delivery[]): Map<string, Delivery[]> {
  const groups = new Map<string, Delivery[]>();
  for (const d of deliveries) groups.set(d.id, [...(groups.get(d.id) ?? []), d]);
  return groups;
}

describe('webhook settings', () => {
  const publicUrl = 'https://uploads.example.test';
  const base = { WEBHOOK_SECRET: secret, PUBLIC_URL: publicUrl };
  const problemsOf = (env: Record<string, string>): string[] => {
    try {
      loadConfig(env);
    } catch (error) {
      if (error instanceof ConfigError) return error.problems;
      throw error;
    }
    return [];
  };

  it('reads one or more URLs, with their defaults', () => {
    const config = loadConfig({ ...base, WEBHOOK_URL: 'https://app.example/hooks, http://10.0.0.5:8080/uploads?key=k' });
    expect(config.webhooks).toEqual({
      urls: ['https://app.example/hooks', 'http://10.0.0.5:8080/uploads?key=k'],
      secret,
      publicUrl,
      timeoutMs: 10_000,
      maxAttempts: 10,
      retryDelayMs: 30_000,
    });
    expect(loadConfig(base).webhooks).toBeUndefined();
  });

  it('names every bad value at once', () => {
    expect(problemsOf({ WEBHOOK_URL: 'ftp://app.example/x,not a url,https://ok.example', WEBHOOK_TIMEOUT: '10', WEBHOOK_MAX_ATTEMPTS: '0', WEBHOOK_RETRY_DELAY: 'soon' })).toEqual([
      'WEBHOOK_URL: "ftp://app.example/x" is not an http(s) URL',
      'WEBHOOK_URL: "not a url" is not an http(s) URL',
      'WEBHOOK_TIMEOUT: "10" has no unit; write 10ms or 10s (units: ms, s, m, h, d)',
      'WEBHOOK_MAX_ATTEMPTS: "0" is not a whole number from 1 to 100',
      'WEBHOOK_RETRY_DELAY: "soon" is not a duration (e.g. 30s, 15m, 24h)',
      'WEBHOOK_URL: set WEBHOOK_SECRET too (every webhook is signed with it)',
      'WEBHOOK_URL: set PUBLIC_URL too (webhook bodies carry absolute links, and a worker has no request to build them from)',
    ]);
    expect(problemsOf({ ...base, WEBHOOK_URL: 'https://a.example/h,https://a.example/h' })).toEqual(['WEBHOOK_URL: a URL is listed twice (each would get every event twice)']);
    expect(problemsOf({ ...base, WEBHOOK_URL: 'https://a.example/h', WEBHOOK_SECRET: 'not-a-secret' })).toEqual(['WEBHOOK_SECRET: not whsec_ followed by base64']);
    expect(problemsOf({ WEBHOOK_MAX_ATTEMPTS: '3' })).toEqual(['WEBHOOK_MAX_ATTEMPTS: set WEBHOOK_URL too (there are no webhooks without it)']);
  });
});

describe('webhooks from a server', () => {
  let environment: TestEnvironment;
  let receiver: WebhookReceiver;
  let server: RunningServer;

  beforeAll(async () => {
    receiver = await startWebhookReceiver(secret);
    // Long enough that an app that never answers holds every delivery slot for the whole test.
    environment = await createTestEnvironment('scaleout', await webhookSettings(receiver, { WEBHOOK_TIMEOUT: '60s' }));
    server = await startTestServer(environment);
  });
  afterAll(async () => {
    await server?.close();
    await receiver?.stop();
    await environment?.destroy();
  });
  afterEach(async () => {
    expect(receiver.unverified).toEqual([]);
    receiver.answer = () => 204;
    await receiver.start();
  });

  it('tells of a clean file from creation to ready, and of its deletion, every request verified', async () => {
    const id = await uploadClean(server, { albumId: 'a1' });
    const ready = await receiver.waitFor('upload.ready', (d) => d.payload.type === 'upload.ready' && d.payload.data.id === id);
    expect(types(receiver.of(id))).toEqual(['upload.created', 'upload.ready']);
    const [created] = receiver.of(id);
    expect(created!.payload.data).toMatchObject({ id, status: 'uploading', seq: 1, filename: 'clean.png', metadata: { albumId: 'a1' } });
    // The status JSON at the transition, with absolute links from PUBLIC_URL (no request builds them).
    expect(ready.payload.data).toMatchObject({ id, status: 'ready', scan: 'clean', detectedType: 'image/png', metadata: { albumId: 'a1' } });
    expect(ready.payload.data.seq).toBeGreaterThan(1);
    const publicUrl = environment.env.PUBLIC_URL!;
    expect(ready.payload.data.links.self).toBe(`${publicUrl}/api/uploads/${id}`);
    const outputs = ready.payload.data.outputs;
    expect(outputs.map((o) => o.name).sort()).toEqual(['resized', 'thumbnail', 'webp']);
    expect(outputs.every((o) => o.url!.startsWith(`${publicUrl}/api/uploads/${id}/files/`))).toBe(true);
    expect(Date.parse(ready.payload.timestamp)).toBeGreaterThan(Date.parse(created!.payload.timestamp));
    // One webhook-id per event.
    expect(new Set(receiver.of(id).map((d) => d.id)).size).toBe(2);

    const res = await fetch(`${server.url}/api/uploads/${id}`, { method: 'DELETE' });
    expect(res.status).toBe(204);
    const deleted = await receiver.waitFor('upload.deleted', (d) => d.payload.type === 'upload.deleted' && d.payload.data.id === id);
    expect(deleted.payload.data).toMatchObject({ id, status: 'deleted', reason: 'deleted on request', seq: ready.payload.data.seq + 1 });

    // Deliveries are in the status JSON, each done after one attempt.
    const status = await eventually('every delivery done', async () => {
      const s = await fetchStatus(server.url, id);
      return s.webhooks.length === 3 && s.webhooks.every((w) => w.status === 'done') && s;
    });
    expect(status.webhooks).toEqual([
      { url: receiver.url, type: 'upload.created', seq: 1, status: 'done', attempts: 1, error: null },
      { url: receiver.url, type: 'upload.ready', seq: ready.payload.data.seq, status: 'done', attempts: 1, error: null },
      { url: receiver.url, type: 'upload.deleted', seq: deleted.payload.data.seq, status: 'done', attempts: 1, error: null },
    ]);
    // Webhook jobs are not the upload's pipeline jobs.
    expect(status.jobs.map((j) => j.kind)).toEqual(['inspect', 'image']);
  });

  it('tells of a disguised file as rejected', async () => {
    // A PDF that says it is a JPEG: refused on its first bytes.
    const data = pdf(20_000);
    const fileUrl = await createTusUpload(server.url, data.length, { filename: 'photo.jpg', filetype: 'image/jpeg' });
    const id = uploadIdOf(fileUrl);
    const res = await request(fileUrl, 'PATCH', { 'Upload-Offset': 0, 'Content-Type': 'application/offset+octet-stream', 'Content-Length': data.length }, data);
    expect(res.status).toBe(415);
    const rejected = await receiver.waitFor('upload.rejected', (d) => d.payload.type === 'upload.rejected' && d.payload.data.id === id);
    expect(rejected.payload.data).toMatchObject({ id, status: 'rejected', claimedType: 'image/jpeg', seq: 2 });
    expect(rejected.payload.data.reason).toMatch(/pdf/i);
    expect(types(receiver.of(id))).toEqual(['upload.created', 'upload.rejected']);
  });

  it('sends the same webhook-id and body again after a 500, and the retry is seen in the status JSON', async () => {
    const refused = new Set<string>();
    // The first attempt at each upload.ready gets a 500, the next a 204.
    receiver.answer = (d) => (d.payload.type === 'upload.ready' && !refused.has(d.id) ? (refused.add(d.id), 500) : 204);
    const id = await uploadClean(server);
    await eventually('upload.ready delivered twice', async () => receiver.of(id).filter((d) => d.payload.type === 'upload.ready').length === 2);
    const [first, second] = receiver.of(id).filter((d) => d.payload.type === 'upload.ready');
    expect(second!.id).toBe(first!.id);
    expect(second!.body).toBe(first!.body);
    const status = await eventually('the ready delivery done', async () => {
      const s = await fetchStatus(server.url, id);
      return s.webhooks.find((w) => w.type === 'upload.ready' && w.status === 'done') && s;
    });
    expect(status.webhooks.find((w) => w.type === 'upload.ready')).toMatchObject({ status: 'done', attempts: 2, error: null });
    expect(receiver.of(id).filter((d) => d.payload.type === 'upload.ready')).toHaveLength(2);
  });

  it('keeps the pipeline going while an app that never answers holds every delivery slot', async () => {
    receiver.answer = () => 'hang';
    const before = receiver.deliveries.length;
    // Nine uploads: nine upload.created deliveries hang, one more than a process delivers at once.
    const ids = await Promise.all(Array.from({ length: 9 }, () => uploadClean(server)));
    const statuses = await Promise.all(ids.map((id) => fetchStatus(server.url, id)));
    expect(statuses.map((s) => s.status)).toEqual(Array(9).fill('ready'));
    await eventually('every delivery slot held', async () => receiver.deliveries.length - before === 8);
    expect(receiver.deliveries.length - before).toBe(8);
    // Stopping the app drops the hanging requests: each is retried, and all arrive once it is back.
    await receiver.stop();
    receiver.answer = () => 204;
    await receiver.start();
    for (const id of ids) await receiver.waitFor(`upload.ready of ${id}`, (d) => d.payload.type === 'upload.ready' && d.payload.data.id === id, 30_000);
  });

  it('delivers every event once the app is back after being down, and the upload never waits for it', async () => {
    await receiver.stop();
    const ids = [await uploadClean(server), await uploadClean(server)];
    // Down for a while: every delivery has failed a few times, with a short reason.
    const down = await eventually(
      'four refused attempts at each delivery',
      async () => {
        const statuses = await Promise.all(ids.map((id) => fetchStatus(server.url, id)));
        const deliveries = statuses.flatMap((s) => s.webhooks);
        return deliveries.length === 4 && deliveries.every((w) => w.attempts >= 4 && w.status !== 'done') && deliveries;
      },
      30_000,
    );
    expect(new Set(down.map((w) => w.error))).toEqual(new Set(['connection refused']));
    expect(ids.flatMap((id) => receiver.of(id))).toEqual([]);

    await receiver.start();
    // No order is promised between events: wait for each.
    for (const id of ids) {
      for (const type of ['upload.created', 'upload.ready']) {
        await receiver.waitFor(`${type} of ${id}`, (d) => d.payload.type === type && d.payload.data.id === id, 30_000);
      }
    }
  });
});

describe('a delivery that gives up', () => {
  let environment: TestEnvironment;
  let receiver: WebhookReceiver;
  let server: RunningServer;

  beforeAll(async () => {
    receiver = await startWebhookReceiver(secret);
    environment = await createTestEnvironment('scaleout', await webhookSettings(receiver, { WEBHOOK_MAX_ATTEMPTS: '2' }));
    server = await startTestServer(environment);
  });
  afterAll(async () => {
    await server?.close();
    await receiver?.stop();
    await environment?.destroy();
  });

  it('stops after WEBHOOK_MAX_ATTEMPTS without failing the upload', async () => {
    receiver.answer = () => 503;
    const id = await uploadClean(server);
    const status = await eventually('both deliveries given up', async () => {
      const s = await fetchStatus(server.url, id);
      return s.webhooks.length === 2 && s.webhooks.every((w) => w.status === 'failed') && s;
    });
    expect(status).toMatchObject({ status: 'ready', reason: null });
    expect(status.webhooks.map((w) => [w.type, w.attempts, w.error])).toEqual([
      ['upload.created', 2, 'answered HTTP 503'],
      ['upload.ready', 2, 'answered HTTP 503'],
    ]);
    expect(receiver.of(id)).toHaveLength(4);
    expect(receiver.unverified).toEqual([]);
  });
});

describe('webhooks across a SIGKILL', () => {
  let environment: TestEnvironment;
  let receiver: WebhookReceiver;

  beforeAll(async () => {
    receiver = await startWebhookReceiver(secret);
    // A short lease: the next server takes over the killed one's delivery soon.
    environment = await createTestEnvironment('scaleout', await webhookSettings(receiver, { JOB_LEASE: '2s' }));
  });
  afterAll(async () => {
    await killAll();
    await receiver?.stop();
    await environment?.destroy();
  });

  it('loses no event when the server is killed between a transition and its delivery', async () => {
    // The app takes the first upload.ready in and never answers: the server is killed while it waits.
    let held: Delivery | undefined;
    receiver.answer = (d) => (d.payload.type === 'upload.ready' && !held ? ((held = d), 'hang') : 204);
    const first = await startServerProcess(environment.env);
    const id = await uploadClean(first);
    await receiver.waitFor('the held upload.ready', (d) => d === held);
    const killed = await first.kill('SIGKILL');
    expect(killed.signal).toBe('SIGKILL');

    // The app is down when the next server starts: the delivery waits for it, then arrives.
    await receiver.stop();
    const second = await startServerProcess(environment.env);
    await eventually('a refused attempt after the restart', async () => (await fetchStatus(second.url, id)).webhooks.some((w) => w.type === 'upload.ready' && w.error === 'connection refused'), 30_000);
    await receiver.start();
    const again = await receiver.waitFor('upload.ready again', (d) => d.payload.type === 'upload.ready' && d !== held, 30_000);
    expect(again.id).toBe(held!.id);
    expect(again.body).toBe(held!.body);
    await receiver.waitFor('upload.created', (d) => d.payload.type === 'upload.created' && d.payload.data.id === id);
    // Two events, each under one webhook-id with one body, however often it was sent.
    const events = byWebhookId(receiver.of(id));
    expect([...events.values()].map((sent) => new Set(sent.map((d) => d.body)).size)).toEqual([1, 1]);
    const final = await eventually('both deliveries done', async () => {
      const s = await fetchStatus(second.url, id);
      return s.webhooks.every((w) => w.status === 'done') && s;
    });
    expect(final.webhooks.map((w) => w.type)).toEqual(['upload.created', 'upload.ready']);
    expect(receiver.unverified).toEqual([]);
  });
});
