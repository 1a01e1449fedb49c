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
  const identify = callerIdentifier(auth);
  return async (ctx, next) => {
    if (ctx.method === 'OPTIONS' && auth.mode !== 'open') return next();
    const caller = await identify(ctx, mayResume(ctx));
    if (!caller) return;
    ctx.state.caller = caller;
    await next();
  };
}

/** Who is asking `ctx`; undefined once the refusal is answered. `mayResume`: an expired token within its grace may pass. */
export type CallerIdentifier = (ctx: Context, mayResume: boolean) => Promise<Caller | undefined>;

export function callerIdentifier(auth: AuthConfig): CallerIdentifier {
  if (auth.mode === 'open') return async () => openCaller;
  const verify = createTokenVerifier(auth);
  return async (ctx, mayResume) => {
    const check = await verify(bearerToken(ctx.get('Authorization')));
    if ('refusal' in check) return void refuse(ctx, check.refusal);
    if (check.caller.expired && !mayResume) return void refuse(ctx, { status: 401, error: 'invalid_token', description: 'the token has expired' });
    return check.caller;
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
  // The JSON APIs (/api/, /s3/) get JSON; tus gets plain text.
  ctx.body = ctx.path.startsWith('/api/') || ctx.path.startsWith('/s3/') ? { error: refusal.description } : `${refusal.description}\n`;
}
