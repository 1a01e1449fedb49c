import type { Db } from '../server/infra/db/database.ts';
import { takeUploadToken, type RateDecision } from '../server/infra/db/uploadRates.ts';
import type { Logger } from '../server/infra/settings/log.ts';

/**
 * Whether one more upload may be created now by `owner` (with tokens) or from `ip` (without):
 * RATE_LIMIT_UPLOADS per minute, counted in the database so every instance enforces one limit,
 * for tus and direct uploads alike.
 */
export async function takeCreationToken(deps: { db: Db; log: Logger; perMinute: number }, owner: string | null, ip: string): Promise<RateDecision> {
  if (deps.perMinute === 0) return { allowed: true };
  // Prefixed, so an owner named like an address never shares its bucket.
  const bucket = owner === null ? `ip:${ip}` : `owner:${owner}`;
  // Fail open: the limit only guards against abuse, so a failure to count must not refuse every
  // upload. If the database is really down, recording the new upload fails on its own.
  return takeUploadToken(deps.db, bucket, deps.perMinute).catch((err: unknown) => {
    deps.log.warn({ err, bucket }, 'rate limit not checked');
    return { allowed: true };
  });
}

/** What a refused creation is told (RFC 6585's 429, with Retry-After in seconds). */
export function rateRefusalMessage(owner: string | null, waitSeconds: number): string {
  return `Too many uploads ${owner === null ? 'from this address' : 'by this owner'}; try again in ${waitSeconds} s`;
}
