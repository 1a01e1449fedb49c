import { Webhook } from 'standardwebhooks';

/** A JSON POST signed the Standard Webhooks way (standardwebhooks.com), so the receiver can tell it came from us. */
export interface StandardWebhookPost {
  url: string;
  /** `whsec_…` (WEBHOOK_SECRET). */
  secret: string;
  /** `webhook-id`: one per message, the same on every attempt at it, so the receiver can drop duplicates. */
  id: string;
  /** The exact bytes signed and sent. */
  body: string;
  /** Bounds the whole exchange, reading the answer's body included. */
  timeoutMs: number;
}

/**
 * Sends it with `webhook-id`, `webhook-timestamp` (this attempt's time) and `webhook-signature`,
 * signed by the standardwebhooks library itself so any of its verifiers accepts it. A redirect is
 * answered as it is, not followed: following one would send the signed body somewhere else.
 */
export function postStandardWebhook(post: StandardWebhookPost): Promise<Response> {
  const timestamp = new Date();
  return fetch(post.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'webhook-id': post.id,
      'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
      'webhook-signature': new Webhook(post.secret).sign(post.id, timestamp, post.body),
    },
    body: post.body,
    redirect: 'manual',
    signal: AbortSignal.timeout(post.timeoutMs),
  });
}

/**
 * Why a POST got no answer, short and safe to show anyone (no host, no stack): a timeout, a
 * refused connection, or the network error's code. fetch reports the reason in its `cause`.
 */
export function whyNoAnswer(error: unknown, timeoutSetting: string, timeoutMs: number): string {
  if (error instanceof DOMException && error.name === 'TimeoutError') return `no answer within ${timeoutSetting} (${timeoutMs} ms)`;
  const code = (error as { cause?: { code?: unknown } }).cause?.code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  return typeof code === 'string' && /^[A-Z_]+$/.test(code) ? `no answer (${code})` : 'no answer (network error)';
}

/** An app's address for the logs and the status JSON: no credentials or query string, where a URL may carry a key. */
export function withoutSecrets(url: string): string {
  const { origin, pathname } = new URL(url);
  return origin + pathname;
}
