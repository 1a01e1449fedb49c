import Koa, { type ParameterizedContext } from 'koa';
import compose from 'koa-compose';
import type { Server } from '@tus/server';
import type { Scanner } from '../../processors/clamd.ts';
import type { HookContext } from '../../hooks/hookContext.ts';
import { allowedMethods } from './allowedMethods.ts';
import { authenticate, type CallerState } from '../auth/authenticate.ts';
import { databaseRetryAfterSeconds, isDatabaseUnavailable } from '../infra/db/databaseUnavailable.ts';
import { tusUploadAccess, type UploadState } from '../tus/tusUploadAccess.ts';
import { cors, corsPolicy } from './cors.ts';
import { firstBytesCheck } from '../tus/firstBytesCheck.ts';
import type { Metrics } from './metrics.ts';
import { rateLimitUploads } from '../tus/rateLimit.ts';
import { demoRoutes } from './routes/demo.ts';
import { healthRoutes } from './routes/health.ts';
import { metricsRoutes } from './routes/metrics.ts';
import { uploadRoutes } from './routes/uploads.ts';
import { ietfDraftAppends, ietfDraftRequests, type DraftState } from '../tus/ietfDraft/ietfDraft.ts';
import { handleTus } from '../tus/tusHandle.ts';
import { tusPath } from '../../hooks/uploadStatusJson.ts';
import type { UploadEventHub } from './uploadEventHub.ts';
import { tusProtocol } from '../tus/tusProtocol.ts';
import { tusChecksum } from '../tus/tusChecksum.ts';
import { tusConcatenation } from '../tus/tusConcatenation.ts';
import { limitUploadMetadata } from '../tus/uploadMetadataLimits.ts';

/** Routes a signed link opens without a header: downloads (`<img src>`) and the event stream (`EventSource`). */
const signedLinkPath = /^\/api\/uploads\/[^/]+\/(files\/[^/]+|events)$/;

/** The Koa app: request log and metrics, JSON errors, the tus endpoint, the status and download API, the demo page. */
export function createApp(context: HookContext, tus: Server, scanner: Scanner | undefined, metrics: Metrics, hub: UploadEventHub): Koa<UploadState> {
  const { config, db, storage, log } = context;
  const app = new Koa<UploadState>({ proxy: Boolean(config.publicUrl) });
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
      if (isDatabaseUnavailable(error)) {
        log.warn({ err: error, path: ctx.path }, 'database unavailable');
        ctx.status = 503;
        ctx.set('Retry-After', String(databaseRetryAfterSeconds));
        ctx.body = { error: 'the database is unavailable; try again shortly' };
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
  app.use(cors(corsPolicy(config.corsOrigins), '/api/'));

  // An expired token (within AUTH_RESUME_GRACE) may only go on with an upload: HEAD and PATCH of tus.
  const mayResume = (ctx: { method: string; path: string }) => ctx.path.startsWith(`${tusPath}/`) && ['HEAD', 'PATCH'].includes(ctx.method);
  const tusRequest = compose<ParameterizedContext<DraftState>>([
    // The IETF draft's requests become the tus requests they amount to, before anything reads them.
    ietfDraftRequests(context, tus, tusPath),
    // Protocol fixes first: everything after must see the method after X-HTTP-Method-Override.
    tusProtocol(),
    limitUploadMetadata(),
    authenticate(config.auth, mayResume),
    tusUploadAccess(db, tusPath),
    ietfDraftAppends(),
    rateLimitUploads({ db, perMinute: config.rateLimitPerMinute, log }),
    tusConcatenation(context, tusPath),
    // A checksummed body is verified before anything judges or stores it.
    tusChecksum(context),
    firstBytesCheck(context),
    async (ctx) => {
      // @tus/server writes the response itself, streaming the body straight to the store.
      ctx.respond = false;
      const { caller, upload, partial, concat, tusHooks } = ctx.state;
      await handleTus(tus, ctx.req, ctx.res, { caller, ip: ctx.ip, upload, partial, concat, ...tusHooks });
    },
  ]);
  app.use((ctx, next) => (ctx.path === tusPath || ctx.path.startsWith(`${tusPath}/`) ? tusRequest(ctx, next) : next()));

  const apiAuthentication = authenticate(config.auth, () => false);
  // A signed link is its own credential (for <img src> and EventSource); its route checks it.
  const signedLink = (ctx: ParameterizedContext) =>
    config.auth.mode === 'token' && ['GET', 'HEAD'].includes(ctx.method) && signedLinkPath.test(ctx.path) && ctx.query.sig !== undefined;
  app.use((ctx, next) => (ctx.path.startsWith('/api/') && !signedLink(ctx) ? apiAuthentication(ctx, next) : next()));

  for (const router of [uploadRoutes({ config, db, storage, lifecycle: context.lifecycle, baseUrl, hub, log }), healthRoutes({ config, db, storage, scanner }), metricsRoutes(metrics, config.metricsToken), demoRoutes()]) {
    app.use(router.routes()).use(allowedMethods(router));
  }
  return app;
}
