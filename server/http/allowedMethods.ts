import type Router from '@koa/router';
import type { Middleware } from 'koa';

/**
 * @koa/router's allowedMethods, but a method it has never heard of (PROPFIND, BREW) is a 405 with
 * `Allow`, like any other method the route does not take, instead of a 501: a client's mistake is
 * a 4xx, and a 5xx would page whoever watches the server's errors.
 */
export function allowedMethods<State>(router: Router<State>): Middleware<State> {
  const answer = router.allowedMethods() as Middleware<State>;
  return async (ctx, next) => {
    await answer(ctx, next);
    if (ctx.status === 501) ctx.status = 405;
  };
}
