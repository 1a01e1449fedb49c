import type { Middleware } from 'koa';
import { HEADERS } from '@tus/server';

/** The IETF resumable-upload draft's fields (server/tus/ietfDraft/), sent and read by a page that speaks it. */
const draftFields = ['Upload-Complete', 'Upload-Incomplete', 'Upload-Limit', 'Upload-Draft-Interop-Version', 'Accept-Patch'];

/**
 * Response headers a script on another origin may read besides the CORS-safelisted ones:
 * @tus/server's list, plus what says when to retry and why a request was refused.
 * (Fetch: "Access-Control-Expose-Headers … indicates which headers can be exposed as part of the
 * response by listing their names.")
 */
const moreExposedHeaders = ['Upload-Expires', 'Retry-After', 'WWW-Authenticate', 'Content-Disposition', 'Content-Range', 'Accept-Ranges', 'ETag', ...draftFields];
const exposedHeaders = [...HEADERS, ...moreExposedHeaders].join(', ');

// As long as @tus/server's preflight answers are kept (its MAX_AGE).
const preflightMaxAge = '86400';

/** Preflights this layer answers, by path prefix (those of /files/ are @tus/server's). */
const preflights: Record<string, Record<string, string>> = {
  // What a page may send to /api/: the token, and Last-Event-ID for an event stream it resumes.
  '/api/': {
    'Access-Control-Allow-Methods': 'GET, DELETE, OPTIONS',
    'Access-Control-Allow-Headers': 'Authorization, Content-Type, Last-Event-ID',
    'Access-Control-Max-Age': preflightMaxAge,
  },
  // Uppy's AwsS3 plugin: JSON bodies, the token, and an Idempotency-Key on creations.
  '/s3/': {
    'Access-Control-Allow-Methods': 'GET, POST, DELETE, OPTIONS',
    'Access-Control-Allow-Headers': 'Authorization, Content-Type, Idempotency-Key',
    'Access-Control-Max-Age': preflightMaxAge,
  },
};

/** The origins CORS_ORIGINS lets in: `*` for any, else exact `scheme://host[:port]` matches. */
export interface CorsPolicy {
  /** The Access-Control-Allow-Origin value for a request from `origin`, or undefined for none. */
  allowOrigin(origin: string | undefined): string | undefined;
  /** Whether the answer depends on the request's Origin (then caches must be told: `Vary: Origin`). */
  variesByOrigin: boolean;
}

export function corsPolicy(origins: string[]): CorsPolicy {
  if (origins.includes('*')) return { allowOrigin: () => '*', variesByOrigin: false };
  return { allowOrigin: (origin) => (origin !== undefined && origins.includes(origin) ? origin : undefined), variesByOrigin: origins.length > 0 };
}

/**
 * @tus/server's CORS options giving the answers `cors` gives: `*` is its default; otherwise it
 * echoes an origin the function allows and sends none for the rest.
 */
export function tusCorsOptions(origins: string[]): { allowedOrigins?: (origin: string) => boolean; exposedHeaders: string[]; allowedHeaders: string[] } {
  const policy = corsPolicy(origins);
  return {
    allowedOrigins: origins.includes('*') ? undefined : (origin) => policy.allowOrigin(origin) !== undefined,
    exposedHeaders: moreExposedHeaders,
    allowedHeaders: [...draftFields, 'Content-Disposition', 'Idempotency-Key'],
  };
}

/**
 * CORS for every route, refusals included, so a page on another origin can read a 401's
 * WWW-Authenticate or a 429's Retry-After instead of seeing a network error. Set before anything
 * answers; @tus/server writes the same values on its own answers (tusEdge.ts passes it this
 * policy). Preflights of /api/ and /s3/ are answered here; those of /files/ by @tus/server.
 */
export function cors(policy: CorsPolicy): Middleware {
  return async (ctx, next) => {
    const allowed = policy.allowOrigin(ctx.get('Origin') || undefined);
    if (allowed) ctx.set('Access-Control-Allow-Origin', allowed);
    if (policy.variesByOrigin) ctx.vary('Origin');
    ctx.set('Access-Control-Expose-Headers', exposedHeaders);
    const preflight = ctx.method === 'OPTIONS' ? Object.entries(preflights).find(([prefix]) => ctx.path.startsWith(prefix))?.[1] : undefined;
    if (preflight) {
      ctx.set(preflight);
      ctx.status = 204;
      return;
    }
    await next();
  };
}
