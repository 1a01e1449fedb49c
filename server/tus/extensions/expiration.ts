import { ERRORS, Metadata, type DataStore } from '@tus/utils';
import type { TusExtension } from '../tusExtension.ts';

/**
 * What the tus expiration extension asks of HEAD that @tus/server 2.4 does not do:
 * - Upload-Expires is sent for unfinished uploads, as on POST and PATCH, so a client can tell
 *   whether resuming is still worth it ("The Client SHOULD use this header to determine if an
 *   upload is still valid before attempting to resume the upload").
 * - "The Server MUST always include the Upload-Offset header in the response for a HEAD request,
 *   even if the offset is 0, or the upload is already considered completed." @tus/server answers
 *   410 Gone for a completed upload once its expiry time passed; only unfinished uploads expire.
 */
export function expiration(store: DataStore): TusExtension {
  const expiresAfterMs = store.hasExtension('expiration') ? store.getExpiration() : 0;
  return {
    name: 'expiration',
    answer: async (response, { engine, id, engineError }) => {
      if (engine.method !== 'HEAD' || id === undefined) return response;
      if (engineError === ERRORS.FILE_NO_LONGER_EXISTS) {
        const upload = await store.getUpload(id).catch(() => undefined);
        if (!upload || upload.size !== upload.offset) return response;
        const headers = new Headers(response.headers);
        headers.delete('Content-Length');
        headers.set('Cache-Control', 'no-store');
        headers.set('Upload-Offset', String(upload.offset));
        headers.set('Upload-Length', String(upload.size));
        if (upload.metadata) headers.set('Upload-Metadata', Metadata.stringify(upload.metadata));
        return new Response(null, { status: 200, headers });
      }
      const unfinished = response.headers.get('Upload-Offset') !== response.headers.get('Upload-Length');
      if (response.ok && unfinished && expiresAfterMs > 0) {
        const { creation_date } = await store.getUpload(id);
        if (creation_date) response.headers.set('Upload-Expires', new Date(Date.parse(creation_date) + expiresAfterMs).toUTCString());
      }
      return response;
    },
  };
}
