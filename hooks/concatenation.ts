import { findUpload } from '../server/infra/db/records.ts';
import { createPart, deleteParts, releaseParts } from '../server/infra/db/uploadParts.ts';
import type { Concatenated, StoredPart } from '../server/infra/store/storage.ts';
import { firstBytesWanted, refuseFirstBytes, rejectFromFirstBytes } from './firstBytes.ts';
import type { HookContext } from './hookContext.ts';
import { narrowPolicy } from './typePolicy.ts';
import { quotaRefusalAnswer, uploadCreate, type Creator, type FinalRecord, type TusError } from './uploadCreate.ts';
import { uploadFinish } from './uploadFinish.ts';
import type { StoredUpload } from './uploadMetadata.ts';

/**
 * The tus concatenation extension's policy (README, "Parallel uploads"). Partial uploads are
 * pieces of a file nobody has named yet: an authorised owner may create them up to
 * MAX_UPLOAD_SIZE each (@tus/server's size limit for an upload with no record), their bytes count
 * toward QUOTA_BYTES and together they count as one upload in flight. They are never inspected.
 * Everything an upload is judged on (AUTHORIZE_URL, the type policy, the first bytes, the
 * quotas) applies when the final upload is created, which then runs the whole pipeline.
 */

/** A final upload's creation: its Upload-Concat as sent, and the caller's finished parts it names, in order. */
export interface FinalUpload extends FinalRecord {
  parts: StoredPart[];
}

/** One answer for a final naming an unknown upload, another owner's, or one that is no partial: they stay indistinguishable. */
export function notYourPart(url: string): string {
  return `Upload refused: Upload-Concat names ${url}, which is not a partial upload of yours\n`;
}

export async function partialCreate(context: HookContext, upload: StoredUpload, creator: Creator): Promise<void> {
  const { config, db, log } = context;
  const size = upload.size ?? 0;
  const refusal = await createPart(db, { id: upload.id, owner: creator.owner, size, expires_at: new Date(Date.now() + config.uploadExpiresAfterMs) }, config.quotas);
  if (refusal) {
    const { status, reason } = quotaRefusalAnswer(refusal);
    log.info({ upload: upload.id, owner: creator.owner, size, reason }, 'partial upload refused');
    throw { status_code: status, body: `Upload refused: ${reason}\n` } satisfies TusError;
  }
  log.info({ upload: upload.id, owner: creator.owner, size }, 'partial upload created');
}

/**
 * A final upload is judged like any new upload (uploadCreate, which also takes its parts), then
 * on its first bytes, read from the head of its first parts: a refusal rejects it and removes the parts.
 */
export async function finalCreate(context: HookContext, upload: StoredUpload, creator: Creator, final: FinalUpload): ReturnType<typeof uploadCreate> {
  const created = await uploadCreate(context, upload, creator, { final });
  const record = await findUpload(context.db, upload.id);
  const size = upload.size ?? 0;
  if (!record || size === 0) return created;
  const head = await readHeadOfParts(context, final.parts, firstBytesWanted(size));
  const declared = { filename: record.safe_filename, claimedType: record.claimed_type, size };
  const refusal = await refuseFirstBytes(narrowPolicy(context.config.typePolicy, record.limits), declared, head);
  if (!refusal) return created;
  await rejectFromFirstBytes(context, upload.id, refusal);
  await removeParts(context, final.parts);
  context.log.info({ upload: upload.id, owner: creator.owner, reason: refusal.reason }, 'first bytes refused');
  throw { status_code: 415, body: `Upload rejected: ${refusal.reason}\n` } satisfies TusError;
}

async function readHeadOfParts({ storage }: HookContext, parts: StoredPart[], wanted: number): Promise<Buffer> {
  const heads: Buffer[] = [];
  let length = 0;
  for (const part of parts) {
    if (length >= wanted) break;
    if (part.size === 0) continue;
    const head = await storage.readOriginalHead(part.id, Math.min(part.size, wanted - length));
    heads.push(head);
    length += head.length;
  }
  return Buffer.concat(heads);
}

/**
 * Fills the created final upload from its parts in the store, records it received (the pipeline
 * takes it from there) and removes the parts. If the store fails, the final is `failed` and
 * its parts are given back, so the client may create the final again.
 */
export async function assembleFinal(context: HookContext, finalId: string, parts: StoredPart[]): Promise<Concatenated> {
  const { storage, log } = context;
  const size = parts.reduce((sum, part) => sum + part.size, 0);
  let result: Concatenated;
  try {
    result = await storage.concatenate(finalId, parts);
  } catch (error) {
    await abandonFinal(context, finalId, error);
    throw error;
  }
  await uploadFinish(context, { id: finalId, size, offset: size });
  await removeParts(context, parts);
  log.info({ upload: finalId, parts: parts.length, size, ...result }, 'final upload assembled');
  return result;
}

/**
 * A final the store failed to make (creating or filling it) is `failed` and removed, and its parts
 * are given back: the client may create the final again. A final that moved on meanwhile (the
 * client terminated it) keeps that state; cleanup removes the parts it had taken.
 */
export async function abandonFinal({ db, storage, log, lifecycle }: HookContext, finalId: string, error: unknown): Promise<void> {
  log.error({ err: error, upload: finalId }, 'final upload not made');
  const failed = await lifecycle.move(db, finalId, 'failed', { from: ['uploading'], reason: `concatenation failed: ${(error as Error).message}` });
  if (!failed.ok) return;
  await storage.removeUpload(finalId);
  await releaseParts(db, finalId);
}

/** A partial's bytes and record go together; a missing piece is fine (a repeated removal). */
export async function removeParts({ db, storage }: HookContext, parts: Pick<StoredPart, 'id'>[]): Promise<void> {
  for (const part of parts) await storage.removeUpload(part.id);
  await deleteParts(db, parts.map((part) => part.id));
}
