import type { Context } from 'koa';
import { ERRORS } from '@tus/utils';
import type { HookContext } from '../../../hooks/hookContext.ts';
import { sanitizeFilename } from '../../../hooks/sanitizeFilename.ts';
import { uploadSizeLimit } from '../../../hooks/typePolicy.ts';
import type { Upload } from '../../infra/db/schema.ts';
import type { TusExtension } from '../tusExtension.ts';
import { callerOf, type TusRequest } from '../tusRequest.ts';
import { headerInteger, OCTET_STREAM, TUS_VERSION } from '../tusWire.ts';
import { completenessField, draftHeaders, draftRefusal, draftResponse, uploadLimitField, type DraftFields } from './draftAnswer.ts';
import { readDraftRequest, type DraftRequest } from './draftRequest.ts';
import { draftVersionOf, interopVersionHeader, supportedInterop, type DraftVersion } from './draftVersions.ts';
import { sendUploadResumptionSupported } from './informational.ts';

/** Declares an upload's length once its bytes are in, as a tus PATCH with Upload-Length would (tusEdge.ts); throws @tus/server's errors. */
export type DeclareLength = (id: string, length: number, request: TusRequest) => Promise<void>;

/**
 * The IETF resumable-upload draft (draft-ietf-httpbis-resumable-upload), first on the tus path: a
 * request naming `Upload-Draft-Interop-Version` is refused, or handed on as the tus 1.0 request it
 * amounts to, so authentication, ownership, quotas, the rate limit, the first-bytes check, locks
 * and @tus/server's store handling are the same as for tus; the answers are turned into the draft's.
 */
export function ietfDraftRequests(context: HookContext, tusPath: string, declareLength: DeclareLength): TusExtension {
  const { config, storage } = context;
  const recordLimit = (version: DraftVersion, upload: Upload) =>
    uploadLimitField(version, uploadSizeLimit(config, upload.limits, { filename: upload.safe_filename, type: upload.claimed_type ?? undefined }), upload.expires_at);

  /** Where the upload stands after a creation or append @tus/server accepted, completing it if the request said so. */
  const settle = async (draft: DraftRequest, request: TusRequest, response: Response, id: string, known: number | undefined): Promise<Response | DraftFields> => {
    const { version } = draft;
    const offset = Number(response.headers.get('Upload-Offset') ?? 0);
    let length = known ?? draft.length;
    // A request a newer one ended (or whose connection dropped) stored what it got, and "the upload
    // resource MUST NOT be considered complete then".
    const received = request.node.req.complete;
    if (draft.completes && received && length === undefined) {
      // It completed an upload of unknown length ("Upload-Complete: ?1" without Content-Length): its
      // length is where it ended.
      try {
        await declareLength(id, offset, request);
      } catch (error) {
        const { status_code, body } = error as { status_code?: number; body?: string };
        if (status_code === undefined) throw error;
        return refusal(version, new Response(body ?? null, { status: status_code, headers: response.headers }));
      }
      length = offset;
    }
    const complete = length === offset;
    if (draft.completes && received && !complete) {
      // The content ended before the length the upload was given.
      const reason = `the request completes the upload at ${offset} bytes, but its length is ${length}`;
      return draftRefusal(version, response.headers, { complete: false, offset }, 400, reason, 'inconsistent-upload-length');
    }
    return { complete, offset };
  };

  return {
    name: 'IETF draft',
    before: async (ctx, request, next) => {
      const named = ctx.get(interopVersionHeader);
      if (!named) return next();
      const version = draftVersionOf(named);
      if (!version) {
        ctx.status = 400;
        ctx.body = `${interopVersionHeader} ${named} is not supported; this server speaks interop versions ${supportedInterop} of draft-ietf-httpbis-resumable-upload\n`;
        return;
      }
      const draft = readDraftRequest(ctx.req, request.engine.method, request.id !== undefined, version);
      if ('status' in draft) return respond(ctx, draftRefusal(version, new Headers(), { complete: false }, draft.status, draft.reason, draft.problem));
      request.draft = draft;
      asTusRequest(request, draft);
      await next();
      if (ctx.respond !== false) {
        // Answered before @tus/server (401, 404, 415, 429, …): in the draft's terms.
        ctx.remove('Tus-Resumable');
        ctx.remove('Tus-Version');
        ctx.set(interopVersionHeader, String(version.interop));
        if (!ctx.response.get(version.completeness)) ctx.set(...completenessField(version, false));
      }
    },

    created: (url, request) => {
      const { draft } = request;
      if (!draft) return;
      const limits = request.limits ?? callerOf(request).limits;
      const maxSize = uploadSizeLimit(config, limits, { filename: sanitizeFilename(draft.filename), type: undefined });
      const limit = uploadLimitField(draft.version, maxSize, new Date(Date.now() + config.uploadExpiresAfterMs));
      draft.creationLimit = limit;
      // "The server MUST NOT send a 104 when the interop version [...] is missing or mismatching"
      // and "MUST also send a header field `Upload-Draft-Interop-Version` with the interop version"; a
      // 104 "MUST include `Location` header field pointing to the upload resource and MUST include
      // the `Upload-Limit` header field with the corresponding limits if existing."
      sendUploadResumptionSupported(request.node.req, request.node.res, {
        [interopVersionHeader]: String(draft.version.interop),
        Location: url,
        ...(limit ? { 'Upload-Limit': limit } : {}),
      });
    },

    answer: async (response, request) => {
      const { draft, upload } = request;
      if (!draft) return response;
      const { version } = draft;
      switch (draft.procedure) {
        case 'options': {
          // Draft -10: "MUST include the `Accept-Patch` header field in response to an `OPTIONS` request".
          const limit = uploadLimitField(version, uploadSizeLimit(config, {}, { filename: '', type: undefined }), undefined);
          const headers = new Headers(response.headers);
          headers.set('Accept-Patch', 'application/partial-upload');
          if (limit) headers.set('Upload-Limit', limit);
          return new Response(response.body, { status: response.status, headers });
        }
        case 'creation': {
          if (response.status !== 201) return refusal(version, response);
          const location = response.headers.get('Location') ?? '';
          const state = await settle(draft, request, response, location.split('/').pop()!, undefined);
          if (state instanceof Response) return state;
          // "If the request content was fully received, the server MUST include the `Location` response
          // header field pointing to the upload resource and MUST include the `Upload-Limit` header field"; 201 for both.
          return draftResponse(201, draftHeaders(version, response.headers, { ...state, location, limit: draft.creationLimit }));
        }
        case 'append': {
          if (response.status === 409 && upload) {
            const { offset } = await storage.datastore.getUpload(upload.id);
            return mismatchingOffset(version, response.headers, offset, draft.offset!, false);
          }
          if (!response.ok || !upload) return refusal(version, response);
          const state = await settle(draft, request, response, upload.id, upload.size ?? undefined);
          if (state instanceof Response) return state;
          return draftResponse(version.appendStatus, draftHeaders(version, response.headers, state));
        }
        case 'retrieval': {
          if (!response.ok || !upload) return refusal(version, response);
          const offset = Number(response.headers.get('Upload-Offset'));
          const length = headerInteger(response.headers.get('Upload-Length'));
          // "A successful response to a `HEAD` request against an upload resource MUST include the offset
          // [...], MUST include the completeness state [...], MUST include the length [...] unless the
          // client has not supplied one, MUST indicate the limits [...], and SHOULD include the
          // `Cache-Control` header field with the value `no-store`".
          const fields = { offset, length, complete: length === offset, limit: recordLimit(version, upload), more: { 'Cache-Control': 'no-store' } };
          return draftResponse(204, draftHeaders(version, response.headers, fields));
        }
        case 'cancellation':
          if (!response.ok) return refusal(version, response);
          return draftResponse(204, draftHeaders(version, response.headers, { complete: false }));
      }
    },
  };
}

/**
 * After access, for appends: what needs the upload's record. An append to a completed upload is
 * answered here (@tus/server would write to it); a length the append indicates must agree with
 * one already recorded ("If multiple requests include indicators, their indicated values MUST
 * match"), and is declared to @tus/server otherwise.
 */
export function ietfDraftAppends(): TusExtension {
  return {
    name: 'IETF draft appends',
    before: async (ctx, request, next) => {
      const { draft, upload } = request;
      if (draft?.procedure !== 'append' || !upload) return next();
      const { version } = draft;
      if (upload.finished_at && upload.size !== null) return respond(ctx, completedAppend(ctx, draft, upload.size));
      if (draft.length !== undefined && upload.size !== null && draft.length !== upload.size) {
        const reason = `this append indicates a length of ${draft.length} bytes; the upload's is ${upload.size}`;
        return respond(ctx, draftRefusal(version, new Headers(), { complete: false }, 400, reason, 'inconsistent-upload-length'));
      }
      if (draft.length !== undefined && upload.size === null) request.engine.headers.set('Upload-Length', String(draft.length));
      await next();
    },
  };
}

/**
 * "If the upload is already complete, the server MUST NOT modify the upload resource and MUST
 * reject the request." An empty append completing it again at its offset changes nothing and is
 * answered as the completing request was (a client whose last answer was lost may send it).
 */
function completedAppend(ctx: Context, draft: DraftRequest, size: number): Response {
  const { version } = draft;
  const fields: DraftFields = { complete: true, offset: size };
  if (draft.offset !== size) return mismatchingOffset(version, new Headers(), size, draft.offset!, true);
  const empty = (headerInteger(ctx.get('Content-Length')) ?? 0) === 0 && !ctx.get('Transfer-Encoding');
  if (empty && draft.completes) return draftResponse(version.appendStatus, draftHeaders(version, new Headers(), fields));
  const reason = 'the upload is already complete';
  // Drafts -10, -11: "If the client attempted to append a non-zero length document, the server
  // MUST treat this as an inconsistent length failure"; an empty one may get 410 (Gone).
  if (version.completedAppend === 'by-length') {
    return empty
      ? draftRefusal(version, new Headers(), fields, 410, reason, 'completed-upload')
      : draftRefusal(version, new Headers(), fields, 400, reason, 'inconsistent-upload-length');
  }
  return draftRefusal(version, new Headers(), fields, 400, reason, 'completed-upload');
}

/**
 * "If the `Upload-Offset` request header field value does not match the current offset, the
 * upload resource MUST reject the request with a `409 (Conflict)` status code. The response MUST
 * include the correct offset in the `Upload-Offset` header field."
 */
function mismatchingOffset(version: DraftVersion, base: Headers, expected: number, provided: number, complete: boolean): Response {
  const reason = `Upload-Offset ${provided} does not match the upload's offset ${expected}`;
  return draftRefusal(version, base, { complete, offset: expected }, 409, reason, 'mismatching-upload-offset', {
    'expected-offset': expected,
    'provided-offset': provided,
  });
}

/** A refusal of @tus/server's, in the draft's terms. */
async function refusal(version: DraftVersion, response: Response): Promise<Response> {
  const text = (await response.text()).trim();
  const fields = { complete: false };
  // @tus/server's INVALID_LENGTH (a length that disagrees with the recorded one or the offset) and
  // ERR_SIZE_EXCEEDED (content past the length): "The server MUST prevent the offset from exceeding the upload length".
  if ([ERRORS.INVALID_LENGTH.body, ERRORS.ERR_SIZE_EXCEEDED.body].map((b) => b.trim()).includes(text)) {
    return draftRefusal(version, response.headers, fields, 400, 'the content goes past the upload\'s length, or the length disagrees with it', 'inconsistent-upload-length');
  }
  // Already a problem (an Idempotency-Key's): as it is, with the draft's fields.
  if (response.headers.get('Content-Type')?.startsWith('application/problem+json')) {
    const headers = draftHeaders(version, response.headers, fields);
    headers.set('Content-Type', 'application/problem+json');
    return draftResponse(response.status, headers, text);
  }
  return draftRefusal(version, response.headers, fields, response.status, text);
}

/** The tus 1.0 request a draft request amounts to, as @tus/server is to see it. */
function asTusRequest({ engine, node }: TusRequest, draft: DraftRequest): void {
  const { headers } = engine;
  const set = (name: string, value: string | undefined) => (value === undefined ? headers.delete(name) : headers.set(name, value));
  set('Tus-Resumable', TUS_VERSION);
  // The draft has no tus metadata nor concatenation: the type is decided by the bytes, the name by Content-Disposition.
  set('Upload-Metadata', draft.filename ? `filename ${Buffer.from(draft.filename).toString('base64')}` : undefined);
  set('Upload-Concat', undefined);
  set('Upload-Length', undefined);
  set('Upload-Defer-Length', undefined);
  if (draft.procedure === 'creation') {
    if (draft.length === undefined) set('Upload-Defer-Length', '1');
    else set('Upload-Length', String(draft.length));
  }
  if (draft.procedure === 'creation' || draft.procedure === 'append') {
    const hasBody = (headerInteger(node.req.headers['content-length']) ?? 0) > 0 || node.req.headers['transfer-encoding'] !== undefined;
    set('Content-Type', hasBody || draft.procedure === 'append' ? OCTET_STREAM : undefined);
  }
}

/** Sends a Response through Koa (for answers given before @tus/server is asked). */
async function respond(ctx: Context, response: Response): Promise<void> {
  ctx.status = response.status;
  response.headers.forEach((value, name) => ctx.set(name, value));
  const text = await response.text();
  ctx.body = text || null;
  if (!text) ctx.status = response.status;
}
