import type { Middleware } from 'koa';

const TUS_VERSION = '1.0.0';
const corsHeaders = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers': 'Tus-Resumable, Tus-Version, Upload-Offset, Upload-Length, Location',
};

/**
 * What the tus 1.0 spec requires that @tus/server 2.4 does not do on its own. It runs before
 * the request reaches @tus/server and answers the cases below itself.
 */
export function tusProtocol(): Middleware {
  return async (ctx, next) => {
    // "the Server MUST use the value of the X-HTTP-Method-Override header as the HTTP method"
    // (for clients and proxies that only speak GET and POST).
    const override = ctx.get('X-HTTP-Method-Override');
    if (override) ctx.req.method = override.toUpperCase();

    const method = ctx.req.method ?? 'GET';
    if (method !== 'OPTIONS' && method !== 'GET') {
      // "If the version specified by the Client is not supported by the Server, it MUST respond
      // with the 412 Precondition Failed status and MUST include the Tus-Version header."
      // @tus/server answers 400 for an unknown version and leaves out Tus-Version.
      const version = ctx.get('Tus-Resumable');
      if (version !== TUS_VERSION) {
        ctx.set({ ...corsHeaders, 'Tus-Resumable': TUS_VERSION, 'Tus-Version': TUS_VERSION });
        ctx.status = 412;
        ctx.body = version ? `Tus-Resumable ${version} is not supported; this server speaks ${TUS_VERSION}\n` : 'Tus-Resumable header required\n';
        return;
      }
    }
    if (method === 'PATCH') {
      // "All PATCH requests MUST use Content-Type: application/offset+octet-stream, otherwise the
      // server SHOULD return a 415 Unsupported Media Type status." @tus/server answers 400.
      const type = ctx.get('Content-Type').split(';')[0]!.trim().toLowerCase();
      if (type !== 'application/offset+octet-stream') {
        ctx.set({ ...corsHeaders, 'Tus-Resumable': TUS_VERSION });
        ctx.status = 415;
        ctx.body = `PATCH needs Content-Type: application/offset+octet-stream${type ? `, not ${type}` : ''}\n`;
        return;
      }
    }
    await next();
  };
}
