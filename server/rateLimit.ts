import type { Middleware } from 'koa';

/**
 * Limits how many uploads one client address may create per minute (POST on the tus
 * endpoint); resuming an upload (PATCH, HEAD) is never limited. A token bucket per address,
 * in this process: behind a load balancer each instance counts its own share.
 */
export function rateLimitUploads(perMinute: number): Middleware {
  const buckets = new Map<string, { tokens: number; at: number }>();
  const refillPerMs = perMinute / 60_000;
  return async (ctx, next) => {
    if (perMinute === 0 || ctx.method !== 'POST') return next();
    const now = Date.now();
    const bucket = buckets.get(ctx.ip) ?? { tokens: perMinute, at: now };
    bucket.tokens = Math.min(perMinute, bucket.tokens + (now - bucket.at) * refillPerMs);
    bucket.at = now;
    if (bucket.tokens < 1) {
      const waitSeconds = Math.ceil((1 - bucket.tokens) / refillPerMs / 1000);
      ctx.status = 429;
      ctx.set({ 'Retry-After': String(waitSeconds), 'Tus-Resumable': '1.0.0', 'Access-Control-Allow-Origin': '*' });
      ctx.body = `Too many uploads from this address; try again in ${waitSeconds} s\n`;
      return;
    }
    bucket.tokens -= 1;
    buckets.set(ctx.ip, bucket);
    if (buckets.size > 10_000) {
      for (const [ip, b] of buckets) if (b.tokens >= perMinute - 1) buckets.delete(ip);
    }
    return next();
  };
}
