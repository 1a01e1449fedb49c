import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import type { UploadStatusJson } from '../../hooks/uploadStatusJson.ts';
import { freePort } from './freePort.ts';

/** A `whsec_` secret as an app would be given one. */
export function webhookSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

/** One request that arrived and that the standardwebhooks library verified. */
export interface Delivery {
  /** `webhook-id`. */
  id: string;
  timestamp: string;
  /** The body exactly as received. */
  body: string;
  /** As parsed from JSON: the times in `data` are strings. */
  payload: { type: string; timestamp: string; data: UploadStatusJson & { seq: number } };
}

/** What the receiver answers a delivery: an HTTP status, or `hang` (never answer, as a stuck app would). */
export type Answer = number | 'hang';

export interface WebhookReceiver {
  /** Where to send webhooks; the same across stop() and start(). */
  readonly url: string;
  /** Every verified request, in the order they arrived (answered or not). */
  readonly deliveries: Delivery[];
  /** Requests that failed verification, with the library's reason: must stay empty. */
  readonly unverified: string[];
  /** Decides each answer; 204 by default. */
  answer: (delivery: Delivery) => Answer;
  /** Verified deliveries of one upload's events. */
  of(uploadId: string): Delivery[];
  /** Waits for a delivery matching `test` (already there or still to come). */
  waitFor(what: string, test: (delivery: Delivery) => boolean, timeoutMs?: number): Promise<Delivery>;
  /** Stops listening and drops every open connection: the app is down, connections are refused. */
  stop(): Promise<void>;
  /** Listens again on the same port (if it is not listening already). */
  start(): Promise<void>;
}

/**
 * An app's webhook endpoint: a real HTTP server that checks every request with the
 * standardwebhooks library's Webhook.verify, as an app is told to, before it looks at the body.
 */
export async function startWebhookReceiver(secret: string): Promise<WebhookReceiver> {
  const verifier = new Webhook(secret);
  const deliveries: Delivery[] = [];
  const unverified: string[] = [];
  const waiters = new Set<() => void>();
  const hanging = new Set<http.ServerResponse>();
  let port = 0;

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let payload: Delivery['payload'];
      try {
        payload = verifier.verify(body, req.headers as Record<string, string>) as Delivery['payload'];
      } catch (error) {
        unverified.push(`${(error as Error).message}: ${req.headers['webhook-id']}`);
        res.writeHead(400).end();
        return;
      }
      const delivery: Delivery = { id: String(req.headers['webhook-id']), timestamp: String(req.headers['webhook-timestamp']), body, payload };
      deliveries.push(delivery);
      for (const waiter of waiters) waiter();
      const answer = receiver.answer(delivery);
      if (answer === 'hang') {
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
        return;
      }
      res.writeHead(answer).end();
    });
  });

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      if (server.listening) return resolve();
      server.once('error', reject).listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        port = (server.address() as AddressInfo).port;
        resolve();
      });
    });
  await listen();

  const receiver: WebhookReceiver = {
    url: `http://127.0.0.1:${port}/hooks/uploads`,
    deliveries,
    unverified,
    answer: () => 204,
    of: (uploadId) => deliveries.filter((d) => d.payload.data.id === uploadId),
    waitFor: (what, test, timeoutMs = 30_000) =>
      new Promise<Delivery>((resolve, reject) => {
        const check = () => {
          const found = deliveries.find(test);
          if (!found) return;
          finish();
          resolve(found);
        };
        const timer = setTimeout(() => {
          finish();
          const seen = deliveries.map((d) => `${d.payload.type} ${d.payload.data.id} ${d.id}`).join('\n  ');
          reject(new Error(`no webhook ${what} within ${timeoutMs} ms; received:\n  ${seen || '(none)'}`));
        }, timeoutMs);
        const finish = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      }),
    stop: () =>
      new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        for (const res of hanging) res.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
    start: listen,
  };
  return receiver;
}

/**
 * A receiver, and the settings of a server that delivers to it, on a port of its own known before
 * it starts: PUBLIC_URL, which webhook bodies link to, must be the server's real address.
 */
export async function receiverWithSettings(more: Record<string, string> = {}): Promise<{ receiver: WebhookReceiver; settings: Record<string, string> }> {
  const secret = webhookSecret();
  const receiver = await startWebhookReceiver(secret);
  const port = await freePort();
  return { receiver, settings: { PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}`, WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: secret, ...more } };
}
