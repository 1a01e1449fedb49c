import Router from '@koa/router';
import { sql } from 'kysely';
import type { Scanner } from '../../../processors/clamd.ts';
import type { Config } from '../../infra/settings/config.ts';
import type { Db } from '../../infra/db/database.ts';
import type { Storage } from '../../infra/store/storage.ts';

/** /healthz: the process answers. /readyz: it can take uploads (database, store, clamd). */
export function healthRoutes(deps: { config: Config; db: Db; storage: Storage; scanner: Scanner | undefined }): Router {
  // Said on every readiness answer, so a server left open by mistake is seen where it is watched.
  const auth = deps.config.auth.mode === 'open' ? { auth: 'open', warning: openWarning } : { auth: 'token' };
  // Whether uploads are scanned (by whichever process runs the jobs), so a page can say so.
  const scan = deps.config.scan === 'required' ? 'on' : 'off';
  // Whether the bucket takes uploads straight from browsers (/s3/ routes), so a page can offer it.
  const direct = deps.storage.direct ? 'on' : 'off';
  const router = new Router();
  router.get('/healthz', (ctx) => {
    ctx.body = { ok: true };
  });
  router.get('/readyz', async (ctx) => {
    const checks: Record<string, () => Promise<unknown>> = {
      database: () => sql`select 1`.execute(deps.db),
      storage: () => deps.storage.ping(),
      ...(deps.scanner ? { clamd: () => deps.scanner!.ping() } : {}),
    };
    const results = await Promise.all(
      Object.entries(checks).map(async ([name, check]) => {
        try {
          await check();
          return [name, 'ok'] as const;
        } catch (error) {
          return [name, error instanceof Error ? error.message : String(error)] as const;
        }
      }),
    );
    const ok = results.every(([, r]) => r === 'ok');
    ctx.status = ok ? 200 : 503;
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { ok, checks: Object.fromEntries(results), ...auth, scan, direct };
  });
  return router;
}

export const openWarning = 'the server runs open: anyone who can reach it may upload; set AUTH_SECRET, AUTH_PUBLIC_KEY or AUTH_JWKS_URL';
