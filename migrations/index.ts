import type { Migration } from 'kysely';
import * as initial from './001_initial.ts';
import * as rateLimits from './002_rate_limits.ts';
import * as owners from './003_owners.ts';
import * as jobWaits from './004_job_waits.ts';
import * as uploadEvents from './005_upload_events.ts';
import * as webhooks from './006_webhooks.ts';
import * as uploadConcat from './007_upload_concat.ts';
import * as idempotency from './008_idempotency.ts';
import * as directUploads from './009_direct_uploads.ts';

/** Every migration, in order; listed here so they ship with the code instead of being found on disk. */
export const migrations: Record<string, Migration> = {
  '001_initial': initial,
  '002_rate_limits': rateLimits,
  '003_owners': owners,
  '004_job_waits': jobWaits,
  '005_upload_events': uploadEvents,
  '006_webhooks': webhooks,
  '007_upload_concat': uploadConcat,
  '008_idempotency': idempotency,
  '009_direct_uploads': directUploads,
};
