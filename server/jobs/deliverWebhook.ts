import { postStandardWebhook, whyNoAnswer, withoutSecrets } from '../../hooks/standardWebhookPost.ts';
import type { WebhookConfig } from '../infra/settings/config.ts';
import type { Db } from '../infra/db/database.ts';
import { findWebhookMessage } from '../infra/db/jobQueue.ts';
import { backoffMs, PermanentJobError, RetryableJobError, type JobHandler, type JobPolicy } from './jobRunner.ts';

/** Longest wait between two attempts at a delivery, however many attempts WEBHOOK_MAX_ATTEMPTS allows. */
const maxRetryDelayMs = 6 * 3600_000;

/** Webhook retries double from WEBHOOK_RETRY_DELAY (a delivery that gives up never fails its upload: the runner fails uploads only for pipeline jobs). */
export function webhookPolicy(settings: WebhookConfig): JobPolicy {
  return { retryDelayMs: (attempt) => backoffMs(attempt, maxRetryDelayMs, settings.retryDelayMs) };
}

/**
 * The `webhook` job: POSTs its message, exactly as stored at the transition, to its URL, signed
 * under the message's `webhook-id`. Any 2xx is delivered; anything else (another status, a
 * timeout, a refused connection) throws a short reason, shown in the status JSON, and the runner
 * retries. Where it went and why it failed in detail go to the log only.
 */
export function deliverWebhook(db: Db, settings: WebhookConfig): JobHandler {
  return async (job, { log }) => {
    const message = await findWebhookMessage(db, job);
    if (!message || !job.url) throw new PermanentJobError('the webhook message is gone');
    const to = { url: withoutSecrets(job.url), type: message.type, webhookId: message.id };
    let status: number;
    try {
      const response = await postStandardWebhook({ url: job.url, secret: settings.secret, id: message.id, body: message.body, timeoutMs: settings.timeoutMs });
      status = response.status;
      // The answer's body is not read: the status says it all, and an app's long body costs nothing this way.
      await response.body?.cancel();
    } catch (error) {
      const reason = whyNoAnswer(error, 'WEBHOOK_TIMEOUT', settings.timeoutMs);
      log.warn({ ...to, err: error, reason }, 'webhook not delivered');
      throw new RetryableJobError(reason);
    }
    if (status < 200 || status >= 300) {
      log.warn({ ...to, status }, 'webhook not delivered');
      throw new RetryableJobError(`answered HTTP ${status}`);
    }
    log.info({ ...to, status }, 'webhook delivered');
    return { result: { status }, commit: async () => undefined };
  };
}
