import { withoutSecrets } from '../../hooks/standardWebhookPost.ts';
import type { HookContext } from '../../hooks/hookContext.ts';
import { findGivenUpDeliveries, requeueJob } from '../infra/db/jobQueue.ts';

export type ResendOutcome =
  | { webhookId: string; uploadId: string; type: string; url: string; resent: true; lastError: string | null }
  | { id: string; resent: false; reason: string };

/**
 * Queues given-up webhook deliveries again with fresh attempts (WEBHOOK_MAX_ATTEMPTS), e.g. after
 * the app was down longer than the retries last: the same message, `webhook-id` and body, to the
 * same URL, delivered by whichever process runs jobs. `ids` names messages (`webhook-id`) or
 * uploads (all their given-up deliveries); each id with none to resend is refused, with the reason.
 */
export async function resendWebhooks(context: HookContext, ids: readonly string[] | 'all', maxAttempts: number): Promise<ResendOutcome[]> {
  const { db } = context;
  const deliveries = await findGivenUpDeliveries(db, ids);
  const outcomes: ResendOutcome[] = [];
  for (const delivery of deliveries) {
    // Refused when it changed meanwhile (another resend): then it is no longer given up.
    if (!(await requeueJob(db, delivery, maxAttempts))) continue;
    outcomes.push({ webhookId: delivery.webhook_id, uploadId: delivery.upload_id, type: delivery.type, url: withoutSecrets(delivery.url!), resent: true, lastError: delivery.last_error });
  }
  if (ids === 'all') return outcomes;
  for (const id of ids) {
    if (!deliveries.some((d) => d.webhook_id === id || d.upload_id === id)) outcomes.push({ id, resent: false, reason: 'no given-up webhook delivery of that webhook-id or upload' });
  }
  return outcomes;
}
