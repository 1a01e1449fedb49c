import { randomBytes } from 'node:crypto';
import { bytesLeft } from '../server/infra/db/quotas.ts';
import { findUpload, recordMultipartUploadId } from '../server/infra/db/records.ts';
import type { Upload, UploadProtocol } from '../server/infra/db/schema.ts';
import { postLandingKey, type DirectUploads } from '../server/infra/store/storage.ts';
import { firstBytesWanted, refuseFirstBytes, type FirstBytesRefusal } from './firstBytes.ts';
import type { HookContext } from './hookContext.ts';
import { earlierCreation, forgetFailedCreation, idempotencyProblem, keyTakenRefusal, readIdempotencyKey, type IdempotencyProblem, type KeyClaim } from './idempotentCreation.ts';
import { narrowPolicy, uploadSizeLimit } from './typePolicy.ts';
import { uploadCreate, type Creator, type TusError } from './uploadCreate.ts';
import { uploadFinish } from './uploadFinish.ts';
import { declaredFile, metadataOverBounds, type UploadMetadata } from './uploadMetadata.ts';

/**
 * Uploads whose bytes go straight to the bucket (an S3 multipart upload signed part by part, or
 * one presigned POST): the server decides, signs and records, and never sees the bytes until
 * inspection reads the object. The same rules as tus uploads: the creation goes through
 * uploadCreate (the app's check, the type policy, the quota), the completion through uploadFinish.
 */

/** S3's limits: part numbers, and the smallest part but the last (so a file of n bytes needs at most ⌈n / 5 MiB⌉ parts). */
export const maxPartNumber = 10_000;
const minPartBytes = 5 * 1024 * 1024;

/**
 * A refusal the HTTP layer answers as it is: the status and a message fit to show (Koa reads
 * both), or an RFC 9457 problem body (the Idempotency-Key's refusals).
 */
export class DirectUploadRefusal extends Error {
  readonly status: number;
  readonly expose = true;
  readonly problem: string | undefined;
  constructor(status: number, message: string, problem?: string) {
    super(message);
    this.status = status;
    this.problem = problem;
  }
}

const refuseWithProblem = (problem: IdempotencyProblem): never => {
  throw new DirectUploadRefusal(problem.status, (JSON.parse(problem.body) as { detail: string }).detail, problem.body);
};

const refuse = (status: number, message: string): never => {
  throw new DirectUploadRefusal(status, message);
};

/**
 * What a client asks for: the file's name and type, its own metadata, its size when it says it,
 * and its Idempotency-Key header when it sends one.
 */
export interface DirectRequest {
  filename: string | null;
  type: string | null;
  metadata: Record<string, string>;
  size: number | undefined;
  idempotencyKey: string | undefined;
}

/** The bucket, or the refusal naming the setting: the folder store takes no direct uploads. */
export function directUploadsOf(context: HookContext): DirectUploads {
  return context.storage.direct ?? refuse(404, 'direct-to-S3 uploads need a bucket: set S3_BUCKET (this server stores uploads in a folder)');
}

/**
 * Records a direct upload `uploading` (judged like a tus creation) under a new server-made id,
 * which is also its object key. `size` is what the quota reserves: the declared size, or for a
 * presigned POST without one the most it may be.
 */
async function createDirect(context: HookContext, creator: Creator, request: DirectRequest, protocol: UploadProtocol, size: number | undefined): Promise<Upload> {
  const metadata: NonNullable<UploadMetadata> = { ...request.metadata, filename: request.filename, filetype: request.type };
  const over = metadataOverBounds(metadata);
  if (over) refuse(400, `metadata has ${over}`);
  const id = randomBytes(16).toString('hex');
  try {
    await uploadCreate(context, { id, size, offset: 0, metadata }, creator, { protocol });
  } catch (error) {
    const tus = error as Partial<TusError>;
    if (error !== keyTakenRefusal && typeof tus.status_code === 'number') refuse(tus.status_code, String(tus.body).trim());
    throw error;
  }
  return (await findUpload(context.db, id))!;
}

/** A direct creation made, or the one its Idempotency-Key made before (`retried`), with the key it claimed. */
interface Keyed {
  upload: Upload;
  retried: boolean;
  claim: KeyClaim | undefined;
}

/**
 * The Idempotency-Key rule (hooks/idempotentCreation.ts) around a direct creation: the same key
 * from the same owner gives the upload it made; another creation with it is 422; a creation racing
 * with it looks again once the other has made the upload.
 */
async function keyedCreation(context: HookContext, creator: Creator, request: DirectRequest, protocol: UploadProtocol, create: (creator: Creator) => Promise<Upload>): Promise<Keyed> {
  const asked = { protocol, filename: request.filename, type: request.type, size: request.size ?? null, metadata: Object.entries(request.metadata).map(([k, v]) => `${k}=${v}`).sort() };
  const claim = readIdempotencyKey(context, request.idempotencyKey, asked);
  if (!claim) return { upload: await create(creator), retried: false, claim: undefined };
  if ('status' in claim) return refuseWithProblem(claim);
  for (let looked = 0; ; looked++) {
    const earlier = await earlierCreation(context, creator.owner, claim);
    if (earlier.kind === 'same') return { upload: earlier.upload, retried: true, claim };
    if (earlier.kind !== 'none') return refuseWithProblem(earlier.problem);
    try {
      return { upload: await create({ ...creator, idempotency: claim }), retried: false, claim };
    } catch (error) {
      if (error !== keyTakenRefusal) throw error;
      if (looked > 0) return refuseWithProblem(idempotencyProblem('outstanding', 'another request with this Idempotency-Key is creating the upload; retry shortly'));
    }
  }
}

/** A retry's upload the key made, if its creation is over: a retry never signs for an upload that moved on. */
function retriedUpload(upload: Upload, ready: boolean): Upload {
  if (!ready) refuseWithProblem(idempotencyProblem('outstanding', 'the creation with this Idempotency-Key is still under way; retry shortly'));
  if (upload.status !== 'uploading') refuse(409, `the upload this Idempotency-Key made is ${upload.status}; nothing more is signed for it`);
  return upload;
}

/** Its content type in the bucket: the declared one, normalised (what a download of the original does not use: it serves the detected type). */
function contentTypeOf(upload: Upload): string {
  return declaredFile(upload.tus_metadata).type ?? 'application/octet-stream';
}

/** POST /s3/multipart: the record, then the bucket's multipart upload; a bucket that fails leaves the upload `failed`. */
export async function createMultipartUpload(context: HookContext, creator: Creator, request: DirectRequest): Promise<Upload> {
  const direct = directUploadsOf(context);
  const { upload, retried, claim } = await keyedCreation(context, creator, request, 's3-multipart', (as) => createDirect(context, as, request, 's3-multipart', request.size));
  if (retried) return retriedUpload(upload, upload.multipart_upload_id !== null);
  try {
    const uploadId = await direct.createMultipart(upload.storage_key, contentTypeOf(upload));
    await recordMultipartUploadId(context.db, upload.id, uploadId);
    return { ...upload, multipart_upload_id: uploadId };
  } catch (error) {
    context.log.warn({ err: error, upload: upload.id }, 'the bucket did not start a multipart upload');
    await context.lifecycle.move(context.db, upload.id, 'failed', { from: ['uploading'], reason: 'the bucket did not start the multipart upload' });
    // A retry with the key creates anew instead of being given the failed upload.
    if (claim) await forgetFailedCreation(context, creator.owner, claim, upload.id);
    return refuse(503, 'the bucket did not start the upload; try again shortly');
  }
}

/** GET /s3/params: a presigned POST for exactly the declared type, of at most what the policy and the quota leave. */
export async function createPostUpload(context: HookContext, creator: Creator, request: DirectRequest): Promise<{ upload: Upload; url: string; fields: Record<string, string> }> {
  const direct = directUploadsOf(context);
  if (!request.type) refuse(400, 'give the file\'s type (type=…): the POST policy fixes its Content-Type');
  const { config, db } = context;
  let most = request.size ?? uploadSizeLimit(config, creator.limits, { filename: request.filename ?? '', type: request.type ?? undefined });
  const left = creator.owner === null ? undefined : await bytesLeft(db, config.quotas, creator.owner, '');
  // Nothing left: reserving one byte lets the quota refuse it by name.
  if (left !== undefined && request.size === undefined) most = Math.max(1, Math.min(most, left));
  const { upload, retried } = await keyedCreation(context, creator, request, 's3-post', (as) => createDirect(context, as, request, 's3-post', most));
  if (retried) retriedUpload(upload, true);
  // A retry gets a fresh policy for the same upload, within what that upload reserved.
  const signed = await direct.presignPost(upload.storage_key, contentTypeOf(upload), upload.size ?? most, config.s3!.directPresignSeconds);
  return { upload, ...signed };
}

/** The most part numbers an upload may have signed: what its size (declared, else its limit) can need. */
export function partNumbersAllowed(context: HookContext, upload: Upload): number {
  const most = upload.size ?? uploadSizeLimit(context.config, upload.limits, { filename: upload.safe_filename, type: upload.claimed_type ?? undefined });
  return Math.min(maxPartNumber, Math.max(1, Math.ceil(most / minPartBytes)));
}

/** A part's PUT URL for the owner's own multipart upload, within the part numbers its size allows. */
export async function signPart(context: HookContext, upload: Upload, partNumber: number): Promise<{ url: string; expires: number }> {
  const direct = directUploadsOf(context);
  if (upload.status !== 'uploading') refuse(409, `upload is ${upload.status}: no more parts are signed`);
  const allowed = partNumbersAllowed(context, upload);
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > allowed) {
    refuse(400, `the part number must be a whole number from 1 to ${allowed} (what this upload's size can need)`);
  }
  const expires = context.config.s3!.directPresignSeconds;
  return { url: await direct.signPart(upload.storage_key, upload.multipart_upload_id!, partNumber, expires), expires };
}

/** GET /s3/multipart/:uploadId: the parts the bucket holds (none once it was completed or aborted). */
export async function listParts(context: HookContext, upload: Upload) {
  return (await directUploadsOf(context).listParts(upload.storage_key, upload.multipart_upload_id!)) ?? [];
}

/**
 * POST /s3/multipart/:uploadId/complete: the parts the client names must be ones the bucket holds
 * (same ETag); their total must be the declared size and within the type's limit and the quota,
 * else the upload is `rejected` and aborted with nothing kept. Then the bucket assembles the
 * object and the upload is `received`, its inspection queued. A repeated completion answers as
 * the first did.
 */
export async function completeMultipartUpload(context: HookContext, upload: Upload, named: readonly { PartNumber: number; ETag: string }[]): Promise<Upload> {
  const direct = directUploadsOf(context);
  if (upload.status !== 'uploading') {
    if (upload.finished_at && upload.status !== 'deleted') return upload;
    refuse(409, `upload is ${upload.status}${upload.reason ? `: ${upload.reason}` : ''}`);
  }
  if (named.length === 0) refuse(400, 'name the parts to complete the upload with');
  const held = await direct.listParts(upload.storage_key, upload.multipart_upload_id!);
  if (!held) return refuse(409, 'the bucket holds no such multipart upload any more');
  const byNumber = new Map(held.map((part) => [part.PartNumber, part]));
  let total = 0;
  let previous = 0;
  for (const part of named) {
    const found = byNumber.get(part.PartNumber);
    if (part.PartNumber <= previous) refuse(400, 'parts must be named in ascending order of PartNumber, each once');
    if (!found || unquoted(found.ETag) !== unquoted(part.ETag)) refuse(400, `part ${part.PartNumber} is not one the bucket holds with ETag ${part.ETag}`);
    previous = part.PartNumber;
    total += found!.Size;
  }
  const overBy = await sizeRefusal(context, upload, total);
  if (overBy) {
    await rejectDirectUpload(context, upload, overBy);
    refuse(413, `Upload refused: ${overBy}; the upload was aborted and nothing was kept`);
  }
  await direct.completeMultipart(upload.storage_key, upload.multipart_upload_id!, named);
  const finished = await uploadFinish(context, { id: upload.id, size: total, offset: total });
  return finished.ok ? finished.upload : ((await findUpload(context.db, upload.id)) ?? upload);
}

/** Why `total` bytes may not be kept: not the declared size, over the type's limit, or over what the quota leaves. */
async function sizeRefusal(context: HookContext, upload: Upload, total: number): Promise<string | undefined> {
  const { config, db } = context;
  if (total === 0) return 'the parts hold no bytes; an empty file is never a valid upload';
  if (upload.size !== null && total !== upload.size) return `the parts hold ${total} bytes but ${upload.size} were declared`;
  const limit = uploadSizeLimit(config, upload.limits, { filename: upload.safe_filename, type: upload.claimed_type ?? undefined });
  if (total > limit) return `${total} bytes is over the ${limit}-byte limit for this upload`;
  const left = await bytesLeft(db, config.quotas, upload.owner, upload.id);
  if (left !== undefined && total > left) return `quota exceeded: QUOTA_BYTES leaves ${left} bytes, the parts hold ${total}`;
  return undefined;
}

async function rejectDirectUpload(context: HookContext, upload: Upload, reason: string): Promise<void> {
  const rejected = await context.lifecycle.move(context.db, upload.id, 'rejected', { from: ['uploading'], reason });
  if (rejected.ok) await context.storage.removeUpload(upload.id);
}

/** DELETE /s3/multipart/:uploadId: `deleted`, and the bucket's parts aborted. Repeating it changes nothing. */
export async function abortDirectUpload(context: HookContext, upload: Upload): Promise<void> {
  const deleted = await context.lifecycle.move(context.db, upload.id, 'deleted', { from: ['uploading'], reason: 'aborted by the client' });
  if (!deleted.ok && deleted.current?.status !== 'deleted') refuse(409, `upload is ${deleted.current?.status}: only an unfinished upload is aborted (DELETE /api/uploads/${upload.id} removes a finished one)`);
  await context.storage.removeUpload(upload.id);
}

/** The size of what a presigned POST has landed so far, or undefined while nothing has. */
export function postedSize(context: HookContext, upload: Upload): Promise<number | undefined> {
  return directUploadsOf(context).objectSize(postLandingKey(upload.storage_key));
}

/**
 * A presigned POST's object has arrived (S3 enforced its type and size range): it is taken to the
 * upload's own key, where no later POST under the same policy can replace it, and the upload is
 * `received` with its real size. False while there is no object yet.
 */
export async function finishPostUpload(context: HookContext, upload: Upload): Promise<boolean> {
  const direct = directUploadsOf(context);
  if ((await postedSize(context, upload)) === undefined) return false;
  await direct.takePosted(upload.storage_key);
  const size = (await direct.objectSize(upload.storage_key))!;
  await uploadFinish(context, { id: upload.id, size, offset: size });
  return true;
}

/**
 * The ranged read a direct upload gets instead of the check while streaming: its first bytes,
 * judged by the same rule, so a disguised file is rejected without reading it all.
 */
export async function refuseDirectHead(context: HookContext, upload: Upload): Promise<FirstBytesRefusal | undefined> {
  const head = await context.storage.readOriginalHead(upload.storage_key, firstBytesWanted(upload.size ?? undefined));
  return refuseFirstBytes(
    narrowPolicy(context.config.typePolicy, upload.limits),
    { filename: upload.safe_filename, claimedType: upload.claimed_type, size: upload.size ?? undefined },
    head,
  );
}

function unquoted(etag: string): string {
  return etag.replaceAll('"', '');
}
