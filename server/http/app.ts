import Koa, { type Middleware, type ParameterizedContext } from 'koa';
import type { Scanner } from '../../processors/clamd.ts';
import type { HookContext } from '../../hooks/hookContext.ts';
import { allowedMethods } from './allowedMethods.ts';
import { authenticate, type CallerState } from '../auth/authenticate.ts';
import { unavailableDependency, unavailableRetryAfterSeconds } from '../infra/settings/unavailableDependency.ts';
import { cors, corsPolicy } from './cors.ts';
import type { Metrics } from './metrics.ts';
import { demoRoutes } from './routes/demo.ts';
import { directUploadRoutes, directUploadsPath } from './routes/directUploads.ts';
import { healthRoutes } from './routes/health.ts';
import { metricsRoutes } from './routes/metrics.ts';
import { uploadRoutes } from './routes/uploads.ts';
import type { UploadEventHub } from './uploadEventHub.ts';

/** Routes a signed link opens without a header: downloads (`<img src>`) and the event stream (`EventSource`). */
const signedLinkPath = /^\/api\/uploads\/[^/]+\/(files\/[^/]+|events)$/;
/** The files of a multi-file output (HLS): signed in the path, which the route checks, as players send no header. */
const signedFolderPath = /^\/api\/uploads\/[^/]+\/outputs\/[^/]+\/[^/]+\/[^/]+$/;

/** The Koa app: request log and metrics, JSON errors, the tus endpoint, the status and download API, the demo page. */
export function createApp(context: HookContext, tus: Middleware, scanner: Scanner | undefined, metrics: Metrics, hub: UploadEventHub): Koa<CallerState> {
  const { config, db, storage, log } = context;
  const app = new Koa<CallerState>({ proxy: Boolean(config.publicUrl) });
  // Koa 3's ctx.origin is the request's Origin header; links are built from protocol and host.
  const baseUrl = (requestBase: string) => config.publicUrl ?? requestBase;

  app.use(async (ctx, next) => {
    const started = performance.now();
    ctx.res.once('finish', () => {
      const ms = performance.now() - started;
      metrics.observeRequest(ctx.method, ctx.path, ctx.res.statusCode, ms / 1000);
      log.info({ method: ctx.method, path: ctx.path, status: ctx.res.statusCode, ms: Math.round(ms), ip: ctx.ip }, 'request');
    });
    try {
      await next();
    } catch (error) {
      const away = unavailableDependency(error);
      if (away) {
        log.warn({ err: error, path: ctx.path, unavailable: away }, `${away} unavailable`);
        ctx.status = 503;
        ctx.set('Retry-After', String(unavailableRetryAfterSeconds));
        ctx.body = { error: `the ${away} is unavailable; try again shortly` };
        return;
      }
      const status = (error as { status?: number }).status ?? 500;
      const expose = (error as { expose?: boolean }).expose ?? false;
      if (status >= 500) log.error({ err: error, path: ctx.path }, 'request failed');
      ctx.status = status;
      ctx.body = { error: expose && error instanceof Error ? error.message : 'internal error' };
    }
  });

  // Before anything answers, so refusals carry CORS too.
  app.use(cors(corsPolicy(config.corsOrigins)));

  // The tus endpoint: it answers its own path and passes every other request on.
  app.use(tus);

  const apiAuthentication = authenticate(config.auth, () => false);
  // A signed link is its own credential (for <img src> and EventSource); its route checks it.
  const signedLink = (ctx: ParameterizedContext) =>
    config.auth.mode === 'token' &&
    ['GET', 'HEAD'].includes(ctx.method) &&
    ((signedLinkPath.test(ctx.path) && ctx.query.sig !== undefined) || signedFolderPath.test(ctx.path));
  const authenticated = (ctx: ParameterizedContext) => (ctx.path.startsWith('/api/') && !signedLink(ctx)) || ctx.path.startsWith(`${directUploadsPath}/`);
  app.use((ctx, next) => (authenticated(ctx) ? apiAuthentication(ctx, next) : next()));

  for (const router of [uploadRoutes({ config, db, storage, lifecycle: context.lifecycle, baseUrl, hub, log }), directUploadRoutes(context), healthRoutes({ config, db, storage, scanner }), metricsRoutes(metrics, config.metricsToken), demoRoutes()]) {
    app.use(router.routes()).use(allowedMethods(router));
  }
  return app;
}
