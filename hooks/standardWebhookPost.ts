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
