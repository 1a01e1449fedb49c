import { randomUUID } from 'node:crypto';
import type { WebhookConfig } from '../server/infra/settings/config.ts';
import { enqueueWebhook } from '../server/infra/db/jobQueue.ts';
import { uploadStatusFacts } from '../server/infra/db/uploadStatusFacts.ts';
import type { InTransition, UploadEvent } from './uploadLifecycle.ts';
import { uploadStatusJson, type StatusLinks } from './uploadStatusJson.ts';

/**
 * The webhook type of an event, if it has one: `upload.created` for the creation (no `from`), and
 * `upload.<state>` for a terminal state; the states in between go to the live stream only.
 */
export function webhookTypeOf(event: Pick<UploadEvent, 'from' | 'to'>): string | undefined {
  if (event.from === null) return 'upload.created';
  return uploadStatusFacts[event.to].terminal ? `upload.${event.to}` : undefined;
}

/**
 * The lifecycle's extension that queues the webhooks of a transition in its own transaction: the
 * body is built here, once, from the status JSON as the transaction sees it, with the event's
 * sequence number, and stored, so every attempt at every URL sends these bytes.
 */
export function enqueueWebhooks(settings: WebhookConfig, links: StatusLinks): InTransition {
  return async (trx, event, upload) => {
    const type = webhookTypeOf(event);
    if (!type) return;
    const data = { ...(await uploadStatusJson(trx, upload, links)), seq: event.seq };
    const body = JSON.stringify({ type, timestamp: event.at.toISOString(), data });
    await enqueueWebhook(trx, { id: `msg_${randomUUID()}`, uploadId: upload.id, seq: event.seq, type, body }, settings.urls, settings.maxAttempts);
  };
}
