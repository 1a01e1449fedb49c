import type { IncomingMessage } from 'node:http';
import type { Context, Middleware } from 'koa';
import { ERRORS, Metadata, type Server } from '@tus/server';

const TUS_VERSION = '1.0.0';
export const OCTET_STREAM = 'application/offset+octet-stream';

/** A tus request refused before @tus/server sees it: a plain-text reason, and the version spoken (CORS is set by cors.ts). */
export function refuseTusRequest(ctx: Context, status: number, reason: string, headers: Record<string, string> = {}): void {
  ctx.set({ 'Tus-Resumable': TUS_VERSION, ...headers });
  ctx.status = status;
  ctx.body = `${reason}\n`;
}

/**
 * What the tus 1.0 spec requires that @tus/server 2.4 does not do on its own. It runs before
 * the request reaches @tus/server and answers the cases below itself.
 */
export function tusProtocol(): Middleware {
  return async (ctx, next) => {
    // "the Server MUST use the value of the X-HTTP-Method-Override header as the HTTP method"
    // (for clients and proxies that only speak GET and POST). @tus/server 2 ignores the header.
    const override = ctx.get('X-HTTP-Method-Override');
    if (override) ctx.req.method = override.toUpperCase();

    const method = ctx.req.method ?? 'GET';
    if (method !== 'OPTIONS' && method !== 'GET') {
      // "If the version specified by the Client is not supported by the Server, it MUST respond
      // with the 412 Precondition Failed status and MUST include the Tus-Version header."
      // @tus/server answers 400 for an unknown version and leaves out Tus-Version.
      const version = ctx.get('Tus-Resumable');
      if (version !== TUS_VERSION) {
        const reason = version ? `Tus-Resumable ${version} is not supported; this server speaks ${TUS_VERSION}` : 'Tus-Resumable header required';
        return refuseTusRequest(ctx, 412, reason, { 'Tus-Version': TUS_VERSION });
      }
    }
    const type = ctx.get('Content-Type').split(';')[0]!.trim().toLowerCase();
    if (method === 'PATCH') {
      // "All PATCH requests MUST use Content-Type: application/offset+octet-stream, otherwise the
      // server SHOULD return a 415 Unsupported Media Type status." @tus/server answers 400 or 403.
      if (type !== OCTET_STREAM) {
        return refuseTusRequest(ctx, 415, `PATCH needs Content-Type: ${OCTET_STREAM}${type ? `, not ${type}` : ''}`);
      }
      // "apply the bytes contained in the message at the given offset specified by the
      // Upload-Offset header": without one the request is malformed, a 400 (@tus/server: 403).
      if (!ctx.get('Upload-Offset')) return refuseTusRequest(ctx, 400, 'PATCH needs an Upload-Offset header');
    }
    // The media type may carry parameters or capitals; @tus/server compares the whole header, so it
    // would refuse such a PATCH (400) and silently drop the body of such a POST (creation-with-upload).
    if (type === OCTET_STREAM && (method === 'PATCH' || method === 'POST')) setRequestHeader(ctx.req, 'content-type', OCTET_STREAM);
    await next();
  };
}

/**
 * @tus/server reads some headers from `headers` and iterates others from `rawHeaders`: set both
 * (`name` in lower case); undefined removes the header.
 */
export function setRequestHeader(req: IncomingMessage, name: string, value: string | undefined): void {
  const kept: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i]!.toLowerCase() !== name) kept.push(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
  }
  if (value !== undefined) kept.push(name, value);
  req.rawHeaders.splice(0, req.rawHeaders.length, ...kept);
  if (value === undefined) delete req.headers[name];
  else req.headers[name] = value;
}

/**
 * Adds a protocol extension of ours to @tus/server's OPTIONS answer (which lists only its store's),
 * with the headers that describe it and the request headers a page's preflight must be allowed.
 */
export function announceExtension(server: Server, extension: string, more: { headers?: Record<string, string>; requestHeaders?: string[] } = {}): void {
  const options = server.handlers.OPTIONS;
  const send = options.send.bind(options);
  options.send = async (...args) => {
    const res = await send(...args);
    const listed = res.headers.get('Tus-Extension');
    res.headers.set('Tus-Extension', listed ? `${listed},${extension}` : extension);
    for (const [name, value] of Object.entries(more.headers ?? {})) res.headers.set(name, value);
    const allowed = res.headers.get('Access-Control-Allow-Headers');
    if (allowed && more.requestHeaders) res.headers.set('Access-Control-Allow-Headers', [allowed, ...more.requestHeaders].join(', '));
    return res;
  };
}

/**
 * Fixes to @tus/server's HEAD answer, which need the store (applied by createTusServer):
 * - Upload-Expires is sent for unfinished uploads, as on POST and PATCH, so a client can tell
 *   whether resuming is still worth it ("The Client SHOULD use this header to determine if an
 *   upload is still valid before attempting to resume the upload").
 * - "The Server MUST always include the Upload-Offset header in the response for a HEAD request,
 *   even if the offset is 0, or the upload is already considered completed." @tus/server answers
 *   410 Gone for a completed upload once its expiry time passed; only unfinished uploads expire.
 */
export function fixHeadResponses(server: Server): void {
  const { datastore: store, handlers } = server;
  const head = handlers.HEAD;
  const send = head.send.bind(head);
  const expiresAfterMs = store.hasExtension('expiration') ? store.getExpiration() : 0;
  head.send = async (req, context, headers = new Headers()) => {
    const id = head.getFileIdFromRequest(req);
    try {
      const res = await send(req, context, headers);
      const unfinished = res.headers.get('Upload-Offset') !== res.headers.get('Upload-Length');
      if (id && unfinished && expiresAfterMs > 0) {
        const { creation_date } = await store.getUpload(id);
        if (creation_date) res.headers.set('Upload-Expires', new Date(Date.parse(creation_date) + expiresAfterMs).toUTCString());
      }
      return res;
    } catch (error) {
      const upload = error === ERRORS.FILE_NO_LONGER_EXISTS && id ? await store.getUpload(id).catch(() => undefined) : undefined;
      if (!upload || upload.size !== upload.offset) throw error;
      headers.set('Cache-Control', 'no-store');
      headers.set('Upload-Offset', String(upload.offset));
      headers.set('Upload-Length', String(upload.size));
      if (upload.metadata) headers.set('Upload-Metadata', Metadata.stringify(upload.metadata));
      return head.write(200, headers);
    }
  };
}
