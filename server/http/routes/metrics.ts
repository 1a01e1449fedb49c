import { createHash, timingSafeEqual } from 'node:crypto';
import Router from '@koa/router';
import { bearerToken } from '../../auth/authenticate.ts';
import type { Metrics } from '../metrics.ts';

/**
 * /metrics: Prometheus text. Same port as uploads: with METRICS_TOKEN set it answers only to
 * `Authorization: Bearer <METRICS_TOKEN>`; without, keep it off the public side of the proxy.
 */
export function metricsRoutes(metrics: Metrics, metricsToken: string | undefined): Router {
  const router = new Router();
  const tokenMatches = metricsToken === undefined ? () => true : sameSecret(metricsToken);
  router.get('/metrics', async (ctx) => {
    if (!tokenMatches(bearerToken(ctx.get('Authorization')) ?? '')) {
      // RFC 6750 3.1: "If the request lacks any authentication information … the resource server
      // SHOULD NOT include an error code"; a token that does not match is an invalid_token.
      const error = ctx.get('Authorization') ? ', error="invalid_token"' : '';
      ctx.status = 401;
      ctx.set({ 'WWW-Authenticate': `Bearer realm="metrics"${error}`, 'Cache-Control': 'no-store' });
      ctx.body = error ? 'the metrics token does not match METRICS_TOKEN\n' : 'a Bearer token (METRICS_TOKEN) is required\n';
      return;
    }
    const text = await metrics.scrape();
    // Before the body: a string body would otherwise set text/plain without the format version.
    ctx.set('Content-Type', metrics.contentType);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = text;
  });
  return router;
}

/** Compares in constant time: digests first, so neither a length nor a matching prefix shows in the timing. */
function sameSecret(secret: string): (given: string) => boolean {
  const digest = (value: string) => createHash('sha256').update(value).digest();
  const wanted = digest(secret);
  return (given) => timingSafeEqual(digest(given), wanted);
}
