import Router from '@koa/router';
import type { ParameterizedContext } from 'koa';
import {
  abortDirectUpload,
  completeMultipartUpload,
  createMultipartUpload,
  createPostUpload,
  DirectUploadRefusal,
  directUploadsOf,
  finishPostUpload,
  listParts,
  signPart,
  type DirectRequest,
} from '../../../hooks/directUpload.ts';
import type { HookContext } from '../../../hooks/hookContext.ts';
import { rateRefusalMessage, takeCreationToken } from '../../../hooks/creationRate.ts';
import { uploadIdPattern } from '../../../hooks/uploadStatusJson.ts';
import type { Creator } from '../../../hooks/uploadCreate.ts';
import type { CallerState } from '../../auth/authenticate.ts';
import { findOwnUpload } from '../../infra/db/records.ts';
import type { Upload, UploadProtocol } from '../../infra/db/schema.ts';
import { httpError } from '../httpError.ts';
import { readJsonBody } from '../jsonBody.ts';

/** Where direct uploads are served: Uppy's AwsS3 plugin appends `s3/multipart…` and `s3/params` to its `endpoint`. */
export const directUploadsPath = '/s3';

/** A completion names at most 10,000 parts of ~60 bytes each in JSON (Companion takes 1 MB too). */
const maxBodyBytes = 1024 * 1024;

type DirectContext = ParameterizedContext<CallerState> & { params: Record<string, string | undefined> };

/**
 * Direct-to-S3 uploads as Uppy's `@uppy/aws-s3` and Companion speak them (hooks/directUpload.ts
 * decides): create, sign a part, list parts, complete and abort a multipart upload, and a
 * presigned POST. The `key` and `uploadId` a client sends only name the caller's own upload: any
 * other pair is the 404 of an unknown one.
 */
export function directUploadRoutes(context: HookContext): Router<CallerState> {
  const { config, db, log } = context;
  const router = new Router<CallerState>({ prefix: directUploadsPath });
  const notFound = (): never => httpError(404, 'no such upload');

  // The folder store: every route says which setting turns them on. An Idempotency-Key's refusal is an RFC 9457 problem.
  router.use(async (ctx, next) => {
    directUploadsOf(context);
    try {
      await next();
    } catch (error) {
      if (!(error instanceof DirectUploadRefusal) || !error.problem) throw error;
      ctx.status = error.status;
      ctx.type = 'application/problem+json';
      ctx.body = error.problem;
    }
  });

  const creatorOf = (ctx: DirectContext): Creator => ({ owner: ctx.state.caller.owner, limits: ctx.state.caller.limits, ip: ctx.ip });

  /** A creation counts against RATE_LIMIT_UPLOADS like a tus POST. */
  const limitRate = async (ctx: DirectContext) => {
    const owner = ctx.state.caller.owner;
    const decision = await takeCreationToken({ db, log, perMinute: config.rateLimitPerMinute }, owner, ctx.ip);
    if (decision.allowed) return;
    ctx.set('Retry-After', String(decision.retryAfterSeconds));
    httpError(429, rateRefusalMessage(owner, decision.retryAfterSeconds));
  };

  /** The caller's own direct upload of `protocol` that `key` (and for multipart `uploadId`) name, or the 404. */
  const ownUpload = async (ctx: DirectContext, protocol: UploadProtocol, key: unknown, uploadId?: string): Promise<Upload> => {
    if (typeof key !== 'string' || !uploadIdPattern.test(key)) return notFound();
    const upload = await findOwnUpload(db, key, ctx.state.caller.owner);
    if (!upload || upload.protocol !== protocol || (uploadId !== undefined && upload.multipart_upload_id !== uploadId)) return notFound();
    return upload;
  };
  const multipartOf = (ctx: DirectContext) => ownUpload(ctx, 's3-multipart', ctx.query.key, ctx.params.uploadId);

  const answer = (ctx: DirectContext, body: unknown) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = body;
  };
  // Where a completed upload is followed: its status JSON (Uppy reports it as the file's uploadURL).
  const statusUrl = (ctx: DirectContext, id: string) => `${config.publicUrl ?? `${ctx.protocol}://${ctx.host}`}/api/uploads/${id}`;

  router.post('/multipart', async (ctx) => {
    const request = directRequest(await readJsonBody(ctx, maxBodyBytes), ctx.get('Idempotency-Key') || undefined);
    await limitRate(ctx);
    const upload = await createMultipartUpload(context, creatorOf(ctx), request);
    answer(ctx, { key: upload.storage_key, uploadId: upload.multipart_upload_id, bucket: config.s3!.bucket });
  });

  router.get('/multipart/:uploadId', async (ctx) => {
    answer(ctx, await listParts(context, await multipartOf(ctx)));
  });

  router.get('/multipart/:uploadId/:partNumber', async (ctx) => {
    const upload = await multipartOf(ctx);
    const partNumber = /^\d{1,5}$/.test(ctx.params.partNumber!) ? Number(ctx.params.partNumber) : NaN;
    answer(ctx, await signPart(context, upload, partNumber));
  });

  router.post('/multipart/:uploadId/complete', async (ctx) => {
    const upload = await multipartOf(ctx);
    const body = (await readJsonBody(ctx, maxBodyBytes)) as { parts?: unknown };
    const parts = body.parts;
    if (!Array.isArray(parts) || !parts.every((p) => Number.isInteger(p?.PartNumber) && typeof p?.ETag === 'string')) {
      httpError(400, '`parts` must be an array of {PartNumber, ETag}');
    }
    const completed = await completeMultipartUpload(context, upload, parts as { PartNumber: number; ETag: string }[]);
    answer(ctx, { location: statusUrl(ctx, completed.id), key: completed.storage_key, bucket: config.s3!.bucket });
  });

  router.delete('/multipart/:uploadId', async (ctx) => {
    await abortDirectUpload(context, await multipartOf(ctx));
    answer(ctx, {});
  });

  router.get('/params', async (ctx) => {
    const query = { filename: ctx.query.filename, type: ctx.query.type, metadata: queryMetadata(ctx.query), size: ctx.query.size };
    const request = directRequest(query, ctx.get('Idempotency-Key') || undefined);
    await limitRate(ctx);
    const { upload, url, fields } = await createPostUpload(context, creatorOf(ctx), request);
    answer(ctx, { method: 'POST', url, fields, expires: config.s3!.directPresignSeconds, id: upload.id });
  });

  // Uppy calls nothing after a POST: the cleanup finds the object; an app that knows it arrived says so here.
  router.post('/params/:id/complete', async (ctx) => {
    const upload = await ownUpload(ctx, 's3-post', ctx.params.id);
    if (upload.status === 'uploading' && !(await finishPostUpload(context, upload))) httpError(409, 'the bucket holds no object for this upload yet');
    answer(ctx, { id: upload.id, location: statusUrl(ctx, upload.id) });
  });

  return router;
}

/** A creation's request from Uppy's JSON (`{filename, type, metadata}`) or the POST's query; `size` when the client says it (also as metadata.size). */
function directRequest(body: unknown, idempotencyKey: string | undefined): DirectRequest {
  if (typeof body !== 'object' || body === null) return httpError(400, 'the body must be a JSON object');
  const { filename, type, metadata = {}, size } = body as Record<string, unknown>;
  if (filename !== undefined && typeof filename !== 'string') httpError(400, '`filename` must be a string');
  if (type !== undefined && typeof type !== 'string') httpError(400, '`type` must be a string');
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) httpError(400, '`metadata` must be an object');
  const own: Record<string, string> = {};
  for (const [key, value] of Object.entries(metadata as Record<string, unknown>)) {
    // Uppy sends the file's meta: its name and type again, and whatever the app added.
    if (['name', 'type', 'filename', 'filetype', 'size'].includes(key) || value === null || value === undefined) continue;
    own[key] = typeof value === 'string' ? value : JSON.stringify(value);
  }
  const declared = size ?? (metadata as Record<string, unknown>).size;
  const sizeText = declared === undefined ? undefined : String(declared);
  if (sizeText !== undefined && !/^\d{1,15}$/.test(sizeText)) httpError(400, '`size` must be a whole number of bytes');
  return { filename: (filename as string | undefined) ?? null, type: (type as string | undefined) ?? null, metadata: own, size: sizeText === undefined ? undefined : Number(sizeText), idempotencyKey };
}

/** Uppy's presigned POST sends the file's meta as `metadata[name]=value` query parameters. */
function queryMetadata(query: Record<string, string | string[] | undefined>): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const [key, value] of Object.entries(query)) {
    const name = /^metadata\[(.+)\]$/.exec(key)?.[1];
    if (name !== undefined && typeof value === 'string') fields[name] = value;
  }
  return fields;
}
