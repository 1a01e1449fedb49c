import type { Middleware } from 'koa';
import { ERRORS } from '@tus/utils';
import { findOwnUpload } from '../infra/db/records.ts';
import type { Db } from '../infra/db/database.ts';
import type { Upload, UploadPart } from '../infra/db/schema.ts';
import { findOwnPart } from '../infra/db/uploadParts.ts';
import type { ConcatCreation } from './tusConcatenation.ts';
import type { CallerState } from '../auth/authenticate.ts';
import { refuse } from '../auth/authenticate.ts';

/** Upload ids as @tus/server makes them (16 random bytes, hex): anything else names no upload. */
export const uploadIdPattern = /^[0-9a-f]{32}$/;

export interface UploadState extends CallerState {
  /** The caller's own upload a tus request names (set for HEAD, PATCH and DELETE). */
  upload?: Upload;
  /** Or the caller's unused partial upload (concatenation) it names. */
  partial?: UploadPart;
  /** A creation of the concatenation extension (set by tusConcatenation). */
  concat?: ConcatCreation;
}

/**
 * tus requests that name an upload reach it only for its owner. An unknown id, an id not in the
 * server's format and another owner's upload all get the same 404 @tus/server gives for a missing
 * upload, so nobody learns that someone else's upload exists. An expired token (within its resume
 * grace) may only go on with an unfinished upload.
 */
export function tusUploadAccess(db: Db, tusPath: string): Middleware<UploadState> {
  return async (ctx, next) => {
    const method = ctx.method;
    if (method === 'OPTIONS' || method === 'POST') return next();
    // @tus/server's GET would serve stored bytes straight from the store, scanned or not; downloads
    // go through /api/uploads/:id/files/, which serves only what is ready.
    if (method === 'GET') {
      ctx.status = 405;
      ctx.set('Allow', 'OPTIONS, POST, HEAD, PATCH, DELETE');
      ctx.body = `GET is not served here; download with GET /api/uploads/<id>/files/original\n`;
      return;
    }
    const id = ctx.path.startsWith(`${tusPath}/`) ? ctx.path.slice(tusPath.length + 1) : '';
    const upload = uploadIdPattern.test(id) ? await findOwnUpload(db, id, ctx.state.caller.owner) : undefined;
    // A partial upload is not an upload of its own (no record in `uploads`); one a final took is gone.
    const partial = upload || !uploadIdPattern.test(id) ? undefined : await findOwnPart(db, id, ctx.state.caller.owner);
    if (partial && partial.final_id === null) {
      ctx.state.partial = partial;
      return next();
    }
    if (!upload) {
      ctx.status = ERRORS.FILE_NOT_FOUND.status_code;
      ctx.set('Tus-Resumable', '1.0.0');
      ctx.body = ERRORS.FILE_NOT_FOUND.body;
      return;
    }
    if (ctx.state.caller.expired && upload.status !== 'uploading') {
      return refuse(ctx, { status: 401, error: 'invalid_token', description: 'the token has expired' });
    }
    ctx.state.upload = upload;
    await next();
  };
}
