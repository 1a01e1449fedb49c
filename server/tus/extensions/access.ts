import { ERRORS } from '@tus/utils';
import { uploadIdPattern } from '../../../hooks/uploadStatusJson.ts';
import { callerIdentifier, refuse } from '../../auth/authenticate.ts';
import type { Db } from '../../infra/db/database.ts';
import { findOwnUpload } from '../../infra/db/records.ts';
import { findOwnPart } from '../../infra/db/uploadParts.ts';
import type { AuthConfig } from '../../infra/settings/config.ts';
import type { TusExtension } from '../tusExtension.ts';
import { TUS_VERSION } from '../tusWire.ts';

/**
 * Who is asking (a token on every request but the preflight), and the upload they name. An unknown
 * id, an id not in the server's format and another owner's upload all get the same 404 @tus/server
 * gives for a missing upload, so nobody learns that someone else's upload exists. An expired token
 * (within AUTH_RESUME_GRACE) may only go on with an unfinished upload: HEAD and PATCH.
 */
export function access(auth: AuthConfig, db: Db): TusExtension {
  const identify = callerIdentifier(auth);
  return {
    name: 'access',
    before: async (ctx, request, next) => {
      const { method } = request.engine;
      if (method === 'OPTIONS') return next();
      const caller = await identify(ctx, request.id !== undefined && (method === 'HEAD' || method === 'PATCH'));
      if (!caller) return;
      request.caller = caller;
      if (method === 'POST') return next();
      // @tus/server's GET would serve stored bytes straight from the store, scanned or not; downloads
      // go through /api/uploads/:id/files/, which serves only what is ready.
      if (method === 'GET') {
        ctx.status = 405;
        ctx.set('Allow', 'OPTIONS, POST, HEAD, PATCH, DELETE');
        ctx.body = 'GET is not served here; download with GET /api/uploads/<id>/files/original\n';
        return;
      }
      const id = request.id ?? '';
      const named = uploadIdPattern.test(id);
      const upload = named ? await findOwnUpload(db, id, caller.owner) : undefined;
      // A partial upload is not an upload of its own (no record in `uploads`); one a final took is gone.
      const partial = upload || !named ? undefined : await findOwnPart(db, id, caller.owner);
      if (partial && partial.final_id === null) {
        request.partial = partial;
        return next();
      }
      if (!upload) {
        ctx.status = ERRORS.FILE_NOT_FOUND.status_code;
        ctx.set('Tus-Resumable', TUS_VERSION);
        ctx.body = ERRORS.FILE_NOT_FOUND.body;
        return;
      }
      if (caller.expired && upload.status !== 'uploading') return refuse(ctx, { status: 401, error: 'invalid_token', description: 'the token has expired' });
      request.upload = upload;
      await next();
    },
  };
}
