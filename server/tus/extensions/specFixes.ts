import type { TusExtension } from '../tusExtension.ts';
import { OCTET_STREAM, refuseTusRequest, TUS_VERSION } from '../tusWire.ts';

/** What the tus 1.0 spec requires of a request that @tus/server 2.4 does not check on its own. */
export function specFixes(): TusExtension {
  return {
    name: 'spec fixes',
    before: async (ctx, { engine }, next) => {
      const { method, headers } = engine;
      if (method !== 'OPTIONS' && method !== 'GET') {
        // "If the version specified by the Client is not supported by the Server, it MUST respond
        // with the 412 Precondition Failed status and MUST include the Tus-Version header."
        // @tus/server answers 400 for an unknown version and leaves out Tus-Version.
        const version = headers.get('Tus-Resumable');
        if (version !== TUS_VERSION) {
          const reason = version ? `Tus-Resumable ${version} is not supported; this server speaks ${TUS_VERSION}` : 'Tus-Resumable header required';
          return refuseTusRequest(ctx, 412, reason, { 'Tus-Version': TUS_VERSION });
        }
      }
      const type = (headers.get('Content-Type') ?? '').split(';')[0]!.trim().toLowerCase();
      if (method === 'PATCH') {
        // "All PATCH requests MUST use Content-Type: application/offset+octet-stream, otherwise the
        // server SHOULD return a 415 Unsupported Media Type status." @tus/server answers 400 or 403.
        if (type !== OCTET_STREAM) return refuseTusRequest(ctx, 415, `PATCH needs Content-Type: ${OCTET_STREAM}${type ? `, not ${type}` : ''}`);
        // "apply the bytes contained in the message at the given offset specified by the
        // Upload-Offset header": without one the request is malformed, a 400 (@tus/server: 403).
        if (!headers.get('Upload-Offset')) return refuseTusRequest(ctx, 400, 'PATCH needs an Upload-Offset header');
      }
      // The media type may carry parameters or capitals; @tus/server compares the whole header, so it
      // would refuse such a PATCH (400) and silently drop the body of such a POST (creation-with-upload).
      if (type === OCTET_STREAM && (method === 'PATCH' || method === 'POST')) headers.set('Content-Type', OCTET_STREAM);
      await next();
    },
  };
}
