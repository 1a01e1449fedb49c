import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../server/main/start.ts';
import { runCommandScript } from './support/commands.ts';
import { eventually } from './support/eventually.ts';
import { pdf } from './support/samples.ts';
import { createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { fetchStatus, tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';
import { receiverWithSettings, type WebhookReceiver } from './support/webhookReceiver.ts';

/**
 * `npm run webhooks -- --resend` as a child process, against a server (in this process) that runs
 * the jobs and a real receiver that verifies every request with the standardwebhooks library.
 */
describe('npm run webhooks -- --resend (scaleout)', () => {
  let environment: TestEnvironment;
  let server: RunningServer;
  let receiver: WebhookReceiver;

  const webhooks = (args: string[]) => runCommandScript('server/main/webhooks.ts', args, environment.env);

  beforeAll(async () => {
    let settings: Record<string, string>;
    ({ receiver, settings } = await receiverWithSettings({ WEBHOOK_MAX_ATTEMPTS: '2', WEBHOOK_RETRY_DELAY: '50ms' }));
    environment = await createTestEnvironment('scaleout', settings);
    server = await startTestServer(environment);
  });
  afterAll(async () => {
    await server?.close();
    await receiver?.stop();
    await environment?.destroy();
  });

  /** A ready upload whose every delivery gave up (the app answered 503 throughout); its id. */
  async function uploadWithGivenUpDeliveries(name: string): Promise<string> {
    receiver.answer = () => 503;
    const id = uploadIdOf((await tusUpload(server.url, pdf(2048), { filename: name })).url);
    expect((await waitUntilSettled(server.url, id)).status).toBe('ready');
    await eventually(`every delivery of ${name} given up`, async () => {
      const { webhooks: deliveries } = await fetchStatus(server.url, id);
      return deliveries.length >= 2 && deliveries.every((d) => d.status === 'failed');
    });
    receiver.answer = () => 204;
    return id;
  }

  it('sends an upload\'s given-up deliveries again: same webhook-id and body, verified, then delivered', async () => {
    const id = await uploadWithGivenUpDeliveries('resent.pdf');
    const refused = receiver.of(id);
    const run = await webhooks(['--resend', id]);
    expect(run, run.stderr).toMatchObject({ code: 0 });
    const webhookIds = [...new Set(refused.map((d) => d.id))];
    expect(run.lines.map((l) => l.webhookId).sort()).toEqual(webhookIds.sort());
    expect(run.lines.every((l) => l.resent === true && l.uploadId === id && l.lastError === 'answered HTTP 503')).toBe(true);

    for (const webhookId of webhookIds) {
      const before = refused.find((d) => d.id === webhookId)!;
      const again = await receiver.waitFor(`resent ${webhookId}`, (d) => d.id === webhookId && !refused.includes(d));
      expect(again.body).toBe(before.body);
    }
    expect(receiver.unverified).toEqual([]);
    await eventually('every delivery done', async () => (await fetchStatus(server.url, id)).webhooks.every((d) => d.status === 'done'));
  });

  it('--failed resends every given-up delivery; an id with none to resend is refused with exit 1', async () => {
    const first = await uploadWithGivenUpDeliveries('one.pdf');
    const second = await uploadWithGivenUpDeliveries('two.pdf');
    const run = await webhooks(['--resend', '--failed']);
    expect(run, run.stderr).toMatchObject({ code: 0 });
    expect(new Set(run.lines.map((l) => l.uploadId))).toEqual(new Set([first, second]));
    for (const id of [first, second]) {
      await eventually(`${id} delivered`, async () => (await fetchStatus(server.url, id)).webhooks.every((d) => d.status === 'done'));
    }
    // Nothing is left to resend: by webhook-id, by upload, or at all.
    const webhookId = receiver.of(first)[0]!.id;
    const none = await webhooks(['--resend', webhookId, first]);
    expect(none.code).toBe(1);
    expect(none.lines).toEqual([
      { id: webhookId, resent: false, reason: expect.stringContaining('no given-up webhook delivery') },
      { id: first, resent: false, reason: expect.stringContaining('no given-up webhook delivery') },
    ]);
    expect(await webhooks(['--resend', '--failed'])).toMatchObject({ code: 0, lines: [] });
  });

  it('refuses bad arguments with the usage and exit code 2, and a server without webhooks with the setting to set', async () => {
    for (const args of [[], ['--resend'], ['--resend', '--failed', 'msg_x'], ['--bogus']]) {
      const run = await webhooks(args);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr).toContain('usage: npm run webhooks');
    }
    const { WEBHOOK_URL: _url, WEBHOOK_MAX_ATTEMPTS: _attempts, WEBHOOK_RETRY_DELAY: _delay, ...withoutWebhooks } = environment.env;
    const run = await runCommandScript('server/main/webhooks.ts', ['--resend', '--failed'], withoutWebhooks);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('WEBHOOK_URL: not set');
  });
});
