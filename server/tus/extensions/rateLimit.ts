import { rateRefusalMessage, takeCreationToken } from '../../../hooks/creationRate.ts';
import type { Db } from '../../infra/db/database.ts';
import type { Logger } from '../../infra/settings/log.ts';
import type { TusExtension } from '../tusExtension.ts';
import { callerOf } from '../tusRequest.ts';
import { refuseTusRequest } from '../tusWire.ts';

/**
 * Limits how many uploads one owner (with tokens) or one client address (without) may create
 * per minute (POST); resuming an upload (PATCH, HEAD) is never limited (hooks/creationRate.ts).
 */
export function rateLimit(deps: { db: Db; perMinute: number; log: Logger }): TusExtension {
  return {
    name: 'rate limit',
    before: async (ctx, request, next) => {
      if (request.engine.method !== 'POST') return next();
      const owner = callerOf(request).owner;
      const decision = await takeCreationToken(deps, owner, request.ip);
      if (decision.allowed) return next();
      const waitSeconds = decision.retryAfterSeconds;
      // RFC 6585: "The response representations SHOULD include details explaining the condition, and
      // MAY include a Retry-After header indicating how long to wait before making a new request."
      refuseTusRequest(ctx, 429, rateRefusalMessage(owner, waitSeconds), { 'Retry-After': String(waitSeconds) });
    },
  };
}
