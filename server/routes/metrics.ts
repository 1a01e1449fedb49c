import Router from '@koa/router';
import type { Metrics } from '../metrics.ts';

/** /metrics: Prometheus text. Same port as uploads: keep it off the public side of the proxy. */
export function metricsRoutes(metrics: Metrics): Router {
  const router = new Router();
  router.get('/metrics', async (ctx) => {
    const text = await metrics.scrape();
    // Before the body: a string body would otherwise set text/plain without the format version.
    ctx.set('Content-Type', metrics.contentType);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = text;
  });
  return router;
}
