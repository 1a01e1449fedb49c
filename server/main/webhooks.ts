import { parseArgs } from 'node:util';
import { ConfigError } from '../infra/settings/config.ts';
import { resendWebhooks } from '../jobs/resendWebhooks.ts';
import { printLine, runCommand, UsageError } from './runCommand.ts';

const usage = `usage: npm run webhooks -- --resend <webhook-id | upload id>… | --resend --failed

Sends given-up webhook deliveries again (those that used all of WEBHOOK_MAX_ATTEMPTS), e.g. after
the app was down longer than the retries last: the same webhook-id and body, with fresh attempts,
delivered by the processes that run jobs (npm start, npm run worker) as soon as they are told.
An upload id resends all of that upload's given-up deliveries; --failed every one there is.
One JSON line per delivery queued again on stdout. Exit 1 when an id had none to resend.`;

type Wanted = { ids: string[] } | { all: true };

function deliveriesWanted(args: string[]): Wanted {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { resend: { type: 'boolean' }, failed: { type: 'boolean' } }, strict: true, allowPositionals: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (!values.resend) throw new UsageError('what to do? --resend is the only action');
  if (values.failed && positionals.length > 0) throw new UsageError('give ids or --failed, not both');
  if (values.failed) return { all: true };
  if (positionals.length === 0) throw new UsageError('which deliveries? give webhook-ids or upload ids, or --failed');
  return { ids: positionals };
}

/** `npm run webhooks -- --resend`: queue given-up webhook deliveries again. */
await runCommand('webhooks', usage, deliveriesWanted, async (context, wanted) => {
  const { webhooks } = context.config;
  if (!webhooks) throw new ConfigError(['WEBHOOK_URL: not set, so no process delivers webhooks (set it, with WEBHOOK_SECRET and PUBLIC_URL, as the servers have it)']);
  const outcomes = await resendWebhooks(context, 'all' in wanted ? 'all' : wanted.ids, webhooks.maxAttempts);
  for (const outcome of outcomes) printLine(outcome);
  return outcomes.some((o) => !o.resent) ? 1 : 0;
});
