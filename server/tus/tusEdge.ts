import { Readable } from 'node:stream';
import type { Middleware } from 'koa';
import { Server } from '@tus/server';
import { ERRORS, EVENTS, Upload, type Locker } from '@tus/utils';
import type { HookContext } from '../../hooks/hookContext.ts';
import { uploadSizeLimit } from '../../hooks/typePolicy.ts';
import { tusPath } from '../../hooks/uploadStatusJson.ts';
import { tusCorsOptions } from '../http/cors.ts';
import { closeAfterAnswer } from '../http/lingeringClose.ts';
import { databaseRetryAfterSeconds, isDatabaseUnavailable } from '../infra/db/databaseUnavailable.ts';
import { bytesLeft } from '../infra/db/quotas.ts';
import { findUpload, recordDeclaredSize } from '../infra/db/records.ts';
import type { Upload as UploadRecord } from '../infra/db/schema.ts';
import type { Concatenated } from '../infra/store/storage.ts';
import { access } from './extensions/access.ts';
import { checksum } from './extensions/checksum.ts';
import { concatenation } from './extensions/concatenation.ts';
import { creation } from './extensions/creation.ts';
import { expiration } from './extensions/expiration.ts';
import { firstBytes } from './extensions/firstBytes.ts';
import { idempotency } from './extensions/idempotency.ts';
import { metadataLimits } from './extensions/metadataLimits.ts';
import { progress } from './extensions/progress.ts';
import { rateLimit } from './extensions/rateLimit.ts';
import { specFixes } from './extensions/specFixes.ts';
import { ietfDraftAppends, ietfDraftRequests, type DeclareLength } from './ietfDraft/ietfDraft.ts';
import { engineRequest, sendAnswer } from './tusBridge.ts';
import type { Created, TusExtension } from './tusExtension.ts';
import { currentTusRequest, openTusRequest, runInRequestScope, type TusRequest } from './tusRequest.ts';
import { TUS_VERSION } from './tusWire.ts';

/**
 * The tus endpoint: @tus/server is the engine, set up here once; every protocol feature around it
 * is an extension in the list below, and this is the only module that talks to @tus/server. A
 * request's steps run in list order before @tus/server reads it, and its answer passes back
 * through them in reverse, as Koa middleware does. `observeConcatenation` is told where each
 * final upload's bytes went.
 */
export function tusEdge(context: HookContext, locker: Locker, observeConcatenation: (result: Concatenated) => void): Middleware {
  const { config, db, storage, log } = context;
  const store = storage.datastore;

  /** The IETF draft's "complete where it ended": what a tus PATCH with Upload-Length does, once the bytes are in. */
  const declareLength: DeclareLength = async (id, length, request) => {
    const lock = locker.newLock(id);
    await lock.lock(new AbortController().signal, () => undefined);
    try {
      const upload = await store.getUpload(id);
      if (upload.sizeIsDeferred) {
        await store.declareUploadLength(id, length);
        await recordDeclaredSize(db, id, length);
        // An empty write, as @tus/server's PATCH makes: a store finishes an upload whose length is reached
        // when it is written to (S3 completes the multipart upload then).
        await store.write(Readable.from([]), id, upload.offset);
      } else if (upload.size !== length) {
        throw ERRORS.INVALID_LENGTH;
      }
      if (upload.offset === length) await finish(new Upload({ ...upload, size: length }), request);
    } finally {
      await lock.unlock();
    }
  };

  const extensions: TusExtension[] = [
    // The draft's requests become the tus requests they amount to, before anything reads them.
    ietfDraftRequests(context, tusPath, declareLength),
    specFixes(),
    metadataLimits(),
    access(config.auth, db),
    // A retried creation is answered before anything counts (rateLimit) or judges it again.
    idempotency(context, retriedAnswer),
    ietfDraftAppends(),
    rateLimit({ db, perMinute: config.rateLimitPerMinute, log }),
    concatenation(context, tusPath, observeConcatenation),
    // A checksummed body is verified before anything judges or stores it.
    checksum(context),
    firstBytes(context),
    progress(context),
    creation(context),
    expiration(store),
  ];
  const befores = extensions.flatMap((e) => (e.before ? [e.before] : []));
  const answers = extensions.flatMap((e) => (e.answer ? [e.answer] : [])).reverse();
  const announcements = extensions.flatMap((e) => (e.announces ? [e.announces] : []));

  async function create(upload: Upload, request: TusRequest): Promise<Created> {
    request.createdId = upload.id;
    for (const extension of extensions) {
      const created = await extension.create?.(upload, request);
      if (created) return created;
    }
    return {};
  }

  async function finish(upload: Upload, request: TusRequest): Promise<void> {
    for (const extension of extensions) if (await extension.finish?.(upload, request)) return;
  }

  /**
   * A creation retried with its Idempotency-Key is answered as its first answer was (201, the same
   * Location as @tus/server makes it) with the upload's offset now; nothing of its body is read.
   */
  async function retriedAnswer(request: TusRequest, upload: UploadRecord): Promise<Response> {
    const stored = await store.getUpload(upload.id).catch(() => undefined);
    const headers = new Headers({
      'Tus-Resumable': TUS_VERSION,
      Location: server.handlers.POST.generateUrl(new Request(`http://localhost${tusPath}`, { headers: request.engine.headers }), upload.id),
      'Upload-Offset': String(stored?.offset ?? upload.offset),
    });
    if (upload.status === 'uploading' && upload.expires_at) headers.set('Upload-Expires', upload.expires_at.toUTCString());
    return new Response(null, { status: 201, headers });
  }

  /** What a failure is answered with (@tus/server's own mapping, where none of these apply). */
  async function failureMapping(request: TusRequest, error: unknown): Promise<{ status_code: number; body: string } | undefined> {
    // A client that is told 503 (with Retry-After) tries again: nothing is lost.
    if (isDatabaseUnavailable(error)) {
      log.warn({ err: error }, 'tus request failed: database unavailable');
      return { status_code: 503, body: 'The database is unavailable; try again shortly\n' };
    }
    if (error === ERRORS.INVALID_TERMINATION) {
      // A refusal, not a malformed request: 403 rather than @tus/server's 400, and say what works.
      return { status_code: 403, body: `Upload ${request.id} is complete and cannot be terminated; remove it with DELETE /api/uploads/${request.id}\n` };
    }
    if (error === ERRORS.FILE_NOT_FOUND && request.id) {
      // "If a Client does attempt to resume an upload which has since been removed by the Server,
      // the Server SHOULD respond with the 404 Not Found or 410 Gone status. The latter one SHOULD
      // be used if the Server is keeping track of expired uploads." We keep the record.
      const upload = await findUpload(db, request.id).catch(() => undefined);
      if (upload && upload.status !== 'uploading') return { status_code: 410, body: `Upload ${request.id} is ${upload.status}${upload.reason ? `: ${upload.reason}` : ''}\n` };
    }
    if (!(error as { status_code?: number }).status_code) log.error({ err: error }, 'tus request failed');
    return undefined;
  }

  const server = new Server({
    path: tusPath,
    datastore: store,
    locker,
    // Finished uploads are removed with DELETE /api/uploads/:id, which also drops their outputs.
    disableTerminationForFinishedUploads: true,
    postReceiveInterval: 1000,
    // The same CORS answers as every other route (cors.ts); @tus/server writes its own on tus responses.
    ...tusCorsOptions(config.corsOrigins),
    generateUrl: config.publicUrl ? (_req, { path, id }) => `${config.publicUrl}${path}/${id}` : undefined,
    // Before an upload exists only the global limit is known; after, the limit of its declared type
    // in the policy its creator's token narrowed.
    maxSize: async (_req, id) => {
      // The row the access extension read for this request: a PATCH reads it once, not twice.
      const known = currentTusRequest().upload;
      const upload = id ? (known?.id === id ? known : await findUpload(db, id)) : undefined;
      if (!upload) return config.maxUploadSize;
      const limit = uploadSizeLimit(config, upload.limits, { filename: upload.safe_filename, type: upload.claimed_type ?? undefined });
      // A length declared at creation was checked against the bytes quota then; a deferred one
      // may grow only into what the owner's other uploads leave of it.
      const left = upload.size === null ? await bytesLeft(db, config.quotas, upload.owner, upload.id) : undefined;
      return left === undefined ? limit : Math.min(limit, left);
    },
    onUploadCreate: (_req, upload) => create(upload, currentTusRequest()),
    onUploadFinish: async (_req, upload) => {
      await finish(upload, currentTusRequest());
      return {};
    },
    onResponseError: (_req, error) => {
      const request = currentTusRequest();
      request.engineError = error;
      return failureMapping(request, error);
    },
  });
  server.on(EVENTS.POST_RECEIVE, (_source: unknown, upload: Upload) => {
    for (const extension of extensions) extension.received?.(upload);
  });
  // Emitted once the store holds the new upload, before its body is read.
  server.on(EVENTS.POST_CREATE, (_req: unknown, _upload: Upload, url: string) => {
    const request = currentTusRequest();
    for (const extension of extensions) extension.created?.(url, request);
  });
  server.on(EVENTS.POST_TERMINATE, (_req: unknown, _res: unknown, id: string) => {
    const request = currentTusRequest();
    for (const extension of extensions) void extension.terminated?.(id, request);
  });

  /** Adds what the extensions announce to @tus/server's OPTIONS answer (which lists only its store's). */
  const announce = (response: Response): Response => {
    const { headers } = response;
    const listed = headers.get('Tus-Extension');
    headers.set('Tus-Extension', [...(listed ? [listed] : []), ...announcements.map((a) => a.extension)].join(','));
    for (const announcement of announcements) for (const [name, value] of Object.entries(announcement.headers ?? {})) headers.set(name, value);
    const allowed = headers.get('Access-Control-Allow-Headers');
    const more = announcements.flatMap((a) => a.requestHeaders ?? []);
    if (allowed && more.length > 0) headers.set('Access-Control-Allow-Headers', [allowed, ...more].join(', '));
    return response;
  };

  /** An answer step that failed is answered as @tus/server answers a failure. */
  const failureAnswer = async (request: TusRequest, error: unknown): Promise<Response> => {
    const { status_code, body } = (await failureMapping(request, error)) ?? {
      status_code: (error as { status_code?: number }).status_code ?? ERRORS.UNKNOWN_ERROR.status_code,
      body: (error as { body?: string }).body ?? `${ERRORS.UNKNOWN_ERROR.body}${(error as Error).message ?? ''}\n`,
    };
    return new Response(body, { status: status_code, headers: { 'Tus-Resumable': TUS_VERSION } });
  };

  /** @tus/server's answer to `request`, passed back through the extensions. */
  const serve = async (request: TusRequest): Promise<Response> => {
    let response = request.retried ? await retriedAnswer(request, request.retried) : await server.handleWeb(engineRequest(request));
    if (request.engine.method === 'OPTIONS') response = announce(response);
    for (const answer of answers) {
      try {
        response = await answer(response, request);
      } catch (error) {
        response = await failureAnswer(request, error);
      }
    }
    // The engine's 503s are all "the database is away; come back".
    if (response.status === 503) response.headers.set('Retry-After', String(databaseRetryAfterSeconds));
    return response;
  };

  return async (ctx, next) => {
    if (ctx.path !== tusPath && !ctx.path.startsWith(`${tusPath}/`)) return next();
    const request = openTusRequest(ctx, tusPath);
    const step = async (i: number): Promise<void> => {
      const before = befores[i];
      // A retried creation (idempotency) gets the upload it made: no later step judges it, and its body is not read.
      if (before && !request.retried) return before(ctx, request, () => step(i + 1));
      if (request.retried && request.store.bodyLength !== 0) closeAfterAnswer(ctx);
      // @tus/server's answer is written here, its body streamed straight to the store.
      ctx.respond = false;
      await sendAnswer(ctx.res, await runInRequestScope(request, () => serve(request)));
    };
    await step(0);
  };
}
