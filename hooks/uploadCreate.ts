import type { QuotaRefusal } from '../server/infra/db/quotas.ts';
import type { UploadLimits, UploadProtocol } from '../server/infra/db/schema.ts';
import { authorizeUpload } from './authorizeUpload.ts';
import type { HookContext } from './hookContext.ts';
import { keyTakenRefusal, type KeyClaim } from './idempotentCreation.ts';
import { sanitizeFilename } from './sanitizeFilename.ts';
import { narrowPolicy, refuseDeclared } from './typePolicy.ts';
import { declaredFile, ownMetadata, replaceOwnMetadata, type StoredUpload, type UploadMetadata } from './uploadMetadata.ts';

/** A tus error: @tus/server sends `status_code` and `body` as the response. */
export interface TusError {
  status_code: number;
  body: string;
}

/**
 * Who creates an upload: its owner (null when the server runs open), what their token allows, and
 * their address; and the Idempotency-Key the creation claims, if it sent one (idempotentCreation.ts).
 */
export interface Creator {
  owner: string | null;
  limits: UploadLimits;
  ip: string;
  idempotency?: KeyClaim;
}

/** What recording a final upload (concatenation) takes: its Upload-Concat as sent, and the partial uploads it claims. */
export interface FinalRecord {
  uploadConcat: string;
  parts: readonly { id: string }[];
}

/** How the upload is made: a final of a concatenation, or one whose bytes go straight to the bucket (tus by default). */
export interface CreationKind {
  final?: FinalRecord;
  protocol?: UploadProtocol;
}

/**
 * Before the upload exists: refuse an empty file and a length over the creator's token; ask the app
 * (AUTHORIZE_URL), which may refuse, replace the metadata or narrow the size; refuse a declared
 * type, extension or length the policy (narrowed by both) does not allow, so nobody sends 500 MiB
 * to be told no; then record the upload as `uploading`, within its owner's quota. Returns the
 * metadata and limits the upload was recorded with.
 */
export async function uploadCreate(
  context: HookContext,
  upload: StoredUpload,
  creator: Creator,
  { final, protocol }: CreationKind = {},
): Promise<{ metadata: UploadMetadata; limits: UploadLimits }> {
  const { config, log } = context;
  let sent = upload.metadata;
  let limits = creator.limits;
  function refuse(status: number, reason: string): never {
    log.info({ upload: upload.id, owner: creator.owner, ...declaredFile(sent), size: upload.size, reason }, 'upload refused');
    throw { status_code: status, body: `Upload refused: ${reason}\n` } satisfies TusError;
  }
  if (upload.size === 0) refuse(400, 'the file is empty (Upload-Length: 0); an empty file is never a valid photo, video or document');
  const refuseOver = (maxSize: number | undefined, whose: string) => {
    if (maxSize !== undefined && upload.size !== undefined && upload.size > maxSize) refuse(413, `${upload.size} bytes is over the ${maxSize}-byte limit ${whose}`);
  };
  refuseOver(creator.limits.maxSize, 'of this token');

  if (config.authorize) {
    const answer = await authorizeUpload(config.authorize, log, {
      owner: creator.owner,
      ...declaredFile(sent),
      size: upload.size ?? null,
      metadata: ownMetadata(sent),
      ip: creator.ip,
    });
    if (answer.verdict === 'unavailable') refuse(503, 'the app that authorizes uploads did not answer; try again later');
    if (answer.verdict === 'refused') refuse(answer.status, answer.message);
    // What the app answers is what is stored, reported and held to the policy from here on.
    if (answer.metadata) sent = replaceOwnMetadata(sent, answer.metadata);
    refuseOver(answer.maxSize, 'the app set for this upload');
    if (answer.maxSize !== undefined) limits = { ...limits, maxSize: Math.min(answer.maxSize, limits.maxSize ?? Infinity) };
  }

  // Postgres text and jsonb cannot hold NUL: the record gets U+FFFD, the store keeps what was sent.
  const metadata = withoutNul(sent);
  const { filename, type } = declaredFile(metadata);
  const safeFilename = sanitizeFilename(filename);
  const refusal = refuseDeclared(narrowPolicy(config.typePolicy, limits), { filename: safeFilename, type: type ?? undefined, size: upload.size });
  if (refusal) refuse(refusal.status, refusal.reason);
  const created = await context.lifecycle.create(
    context.db,
    {
      id: upload.id,
      owner: creator.owner,
      filename,
      safe_filename: safeFilename,
      claimed_type: type,
      size: upload.size ?? null,
      storage_key: upload.id,
      tus_metadata: JSON.stringify(metadata ?? {}),
      limits: JSON.stringify(limits),
      expires_at: new Date(Date.now() + config.uploadExpiresAfterMs),
      upload_concat: final?.uploadConcat ?? null,
      protocol,
    },
    config.quotas,
    final?.parts.map((part) => part.id),
    creator.idempotency,
  );
  if (!created.ok) {
    if (created.refused === 'key taken') {
      log.info({ upload: upload.id, owner: creator.owner }, 'upload not created: a creation with the same Idempotency-Key made it first');
      throw keyTakenRefusal;
    }
    // Another final took one of the parts since they were checked: as if it were not there.
    if (created.refused === 'parts taken') refuse(400, 'one of the partial uploads Upload-Concat names is not a partial upload of yours');
    const { status, reason } = quotaRefusalAnswer(created.refused);
    refuse(status, reason);
  }
  log.info({ upload: upload.id, owner: creator.owner, filename: safeFilename, type, size: upload.size }, 'upload created');
  return { metadata: sent, limits };
}

/**
 * A creation that failed after its record was written (the store refused to make the upload, or
 * its first body): its client never learnt the upload's URL and will create another, so this one
 * leaves nothing that counts against its owner's quota (bytes or unfinished uploads) or stays open
 * in the store. Removal the store refuses now is done again by the cleanup (a deleted upload's
 * bytes are removed once more) or its expiry sweep.
 */
export async function abandonCreation(context: HookContext, id: string, reason: string): Promise<void> {
  const { db, lifecycle, storage, log } = context;
  try {
    const moved = await lifecycle.move(db, id, 'deleted', { from: ['uploading'], reason: `creation failed: ${reason}` });
    if (!moved.ok) return;
    log.info({ upload: id, reason }, 'creation failed half-way; the upload was removed');
    await storage.removeUpload(id);
  } catch (err) {
    log.warn({ err, upload: id }, 'removing a half-made upload failed; the cleanup removes it');
  }
}

/** What a creation its owner's quota refused is answered: the status, and the reason naming the setting. */
export function quotaRefusalAnswer(refusal: QuotaRefusal): { status: number; reason: string } {
  return refusal.quota === 'bytes'
    ? { status: 413, reason: `quota exceeded: QUOTA_BYTES allows ${refusal.limit} stored bytes, ${refusal.used} are in use` }
    : { status: 403, reason: `quota exceeded: QUOTA_UPLOADS_IN_FLIGHT allows ${refusal.limit} unfinished uploads at once; finish or delete one first` };
}

function withoutNul(metadata: UploadMetadata): UploadMetadata {
  return metadata && Object.fromEntries(Object.entries(metadata).map(([key, value]) => [key, value?.replaceAll('\0', '\uFFFD') ?? null]));
}
