import type { Context, Middleware } from 'koa';
import type { AuthConfig } from '../infra/settings/config.ts';
import { createTokenVerifier, openCaller, type Caller, type TokenRefusal } from './verifyToken.ts';

/** What `authenticate` leaves on `ctx.state` for the routes after it. */
export interface CallerState {
  caller: Caller;
}

/**
 * Finds out who is asking, from `Authorization: Bearer <jwt>`, and puts it on `ctx.state.caller`;
 * refuses with 401 (RFC 6750's `WWW-Authenticate`) when the token is missing or does not hold.
 * OPTIONS passes without one: it is the browser's preflight, which never carries credentials.
 * A token past its `exp` but within AUTH_RESUME_GRACE passes only where `mayResume` says.
 */
export function authenticate(auth: AuthConfig, mayResume: (ctx: Context) => boolean): Middleware<CallerState> {
  if (auth.mode === 'open') {
    return async (ctx, next) => {
      ctx.state.caller = openCaller;
      await next();
    };
  }
  const verify = createTokenVerifier(auth);
  return async (ctx, next) => {
    if (ctx.method === 'OPTIONS') return next();
    const check = await verify(bearerToken(ctx.get('Authorization')));
    if ('refusal' in check) return refuse(ctx, check.refusal);
    if (check.caller.expired && !mayResume(ctx)) {
      return refuse(ctx, { status: 401, error: 'invalid_token', description: 'the token has expired' });
    }
    ctx.state.caller = check.caller;
    await next();
  };
}

/** The token of `Bearer <token>` (scheme case-insensitive); undefined for no header or another scheme. */
export function bearerToken(header: string): string | undefined {
  const match = /^Bearer +(\S+)$/i.exec(header.trim());
  return match?.[1];
}

/** A refusal answered on the wire: the header carries the reason too, since HEAD has no body. */
export function refuse(ctx: Context, refusal: TokenRefusal): void {
  ctx.status = refusal.status;
  if (refusal.status === 401) {
    ctx.set('WWW-Authenticate', refusal.error ? `Bearer error="${refusal.error}", error_description="${refusal.description}"` : 'Bearer');
  } else {
    ctx.set('Retry-After', '5');
  }
  ctx.set('Cache-Control', 'no-store');
  ctx.body = ctx.path.startsWith('/api/') ? { error: refusal.description } : `${refusal.description}\n`;
}
