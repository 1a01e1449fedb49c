import type { Db } from '../../infra/db/database.ts';
import { takeUploadToken, type RateDecision } from '../../infra/db/uploadRates.ts';
import type { Logger } from '../../infra/settings/log.ts';
import type { TusExtension } from '../tusExtension.ts';
import { callerOf } from '../tusRequest.ts';
import { refuseTusRequest } from '../tusWire.ts';

/**
 * Limits how many uploads one owner (with tokens) or one client address (without) may create
 * per minute (POST); resuming an upload (PATCH, HEAD) is never limited. The count is kept in the
 * database, so every instance sharing it enforces one limit together.
 */
export function rateLimit({ db, perMinute, log }: { db: Db; perMinute: number; log: Logger }): TusExtension {
  return {
    name: 'rate limit',
    before: async (ctx, request, next) => {
      if (perMinute === 0 || request.engine.method !== 'POST') return next();
      const owner = callerOf(request).owner;
      // Prefixed, so an owner named like an address never shares its bucket.
      const bucket = owner === null ? `ip:${request.ip}` : `owner:${owner}`;
      // Fail open: the limit only guards against abuse, so a failure to count must not refuse every
      // upload. If the database is really down, recording the new upload fails on its own.
      const decision: RateDecision = await takeUploadToken(db, bucket, perMinute).catch((err: unknown) => {
        log.warn({ err, bucket }, 'rate limit not checked');
        return { allowed: true };
      });
      if (decision.allowed) return next();
      const waitSeconds = decision.retryAfterSeconds;
      // RFC 6585: "The response representations SHOULD include details explaining the condition, and
      // MAY include a Retry-After header indicating how long to wait before making a new request."
      refuseTusRequest(ctx, 429, `Too many uploads ${owner === null ? 'from this address' : 'by this owner'}; try again in ${waitSeconds} s`, { 'Retry-After': String(waitSeconds) });
    },
  };
}
