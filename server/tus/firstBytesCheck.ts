import type { Readable } from 'node:stream';
import type { Middleware, ParameterizedContext } from 'koa';
import { Metadata, type Upload } from '@tus/utils';
import type { TypePolicy } from '../infra/settings/config.ts';
import type { HookContext } from '../../hooks/hookContext.ts';
import { firstBytesWanted, refuseFirstBytes, rejectFromFirstBytes, type DeclaredFile } from '../../hooks/firstBytes.ts';
import { sanitizeFilename } from '../../hooks/sanitizeFilename.ts';
import { narrowPolicy } from '../../hooks/typePolicy.ts';
import { declaredFile } from '../../hooks/uploadMetadata.ts';
import type { UploadState } from './tusUploadAccess.ts';
import { closeAfterAnswer } from '../http/lingeringClose.ts';
import { replayReadAhead, requestBody } from './tusHandle.ts';
import { OCTET_STREAM, refuseTusRequest } from './tusProtocol.ts';

/** What a request carrying an upload's first bytes is checked against. */
interface HeadCheck {
  /** The upload the bytes go to; none yet for a creation-with-upload POST. */
  uploadId: string | undefined;
  declared: DeclaredFile;
  policy: TypePolicy;
  wanted: number;
  /** The first bytes already stored (a resumed upload's head). */
  stored: Buffer;
}

/**
 * Checks an upload's first bytes before @tus/server stores them: an executable declared as a
 * 500 MiB MP4 is answered 415 in its first chunk, not after 500 MiB. Reads at most the sample off
 * the request (plus the chunk it came in), then hands @tus/server the body from its first byte.
 */
export function firstBytesCheck(context: HookContext): Middleware<UploadState> {
  return async (ctx, next) => {
    // Partial uploads are never inspected; a final's first bytes are checked when it is created (hooks/concatenation.ts).
    if (ctx.state.concat || ctx.state.partial) return next();
    const check = ctx.method === 'PATCH' ? await resumedHead(context, ctx) : ctx.method === 'POST' ? creationHead(context, ctx) : undefined;
    if (!check) return next();
    const arriving = await readAhead(requestBody(ctx.req), check.wanted - check.stored.length);
    const head = Buffer.concat([check.stored, arriving]);
    // Too few bytes yet to decide: a later PATCH completes the head.
    const refusal = head.length >= check.wanted ? await refuseFirstBytes(check.policy, check.declared, head.subarray(0, check.wanted)) : undefined;
    if (!refusal) {
      replayReadAhead(ctx.req, arriving);
      return next();
    }
    if (check.uploadId) await rejectFromFirstBytes(context, check.uploadId, refusal);
    context.log.info({ upload: check.uploadId, owner: ctx.state.caller.owner, reason: refusal.reason }, 'first bytes refused');
    refuseTusRequest(ctx, 415, `Upload rejected: ${refusal.reason}`);
    closeAfterAnswer(ctx);
  };
}

/** A PATCH to an upload whose stored head is shorter than the sample; undefined when there is nothing to check. */
async function resumedHead({ config, storage, log }: HookContext, ctx: ParameterizedContext<UploadState>): Promise<HeadCheck | undefined> {
  const upload = ctx.state.upload;
  if (!upload || upload.status !== 'uploading') return undefined;
  const size = upload.size ?? lengthOf(ctx.get('Upload-Length'));
  const wanted = firstBytesWanted(size);
  // The record's offset lags the store's, never leads it: past the sample here means checked.
  if (upload.offset >= wanted) return undefined;
  // Gone from the store, or at the wrong offset: @tus/server's to answer (404, 409), and it stores nothing.
  // A PATCH to offset 0 of an upload recorded at 0 needs no lookup: were the store ahead of the record,
  // @tus/server would answer 409 and store nothing, whatever this check made of the bytes.
  const offset =
    upload.offset === 0 && ctx.get('Upload-Offset') === '0' ? 0 : (await storage.datastore.getUpload(upload.id).catch(() => undefined))?.offset;
  if (offset === undefined || offset >= wanted || ctx.get('Upload-Offset') !== String(offset)) return undefined;
  // The early check only saves a transfer: if the stored head cannot be read, the full inspection decides.
  const stored =
    offset === 0
      ? Buffer.alloc(0)
      : await storage.readHead(upload.storage_key, offset).catch((err: unknown) => {
          log.warn({ err, upload: upload.id }, 'stored head not read; the full inspection decides');
          return undefined;
        });
  if (!stored) return undefined;
  return {
    uploadId: upload.id,
    declared: { filename: upload.safe_filename, claimedType: upload.claimed_type, size },
    policy: narrowPolicy(config.typePolicy, upload.limits),
    wanted,
    stored,
  };
}

/** A creation-with-upload POST, checked as declared by its own headers before anything is created. */
function creationHead({ config }: HookContext, ctx: ParameterizedContext<UploadState>): HeadCheck | undefined {
  // Without this Content-Type @tus/server ignores the body (tusProtocol has normalised it).
  if (ctx.req.headers['content-type'] !== OCTET_STREAM) return undefined;
  const size = lengthOf(ctx.get('Upload-Length'));
  // Upload-Length: 0 is refused by uploadCreate; a bad header or metadata by @tus/server.
  if (size === 0) return undefined;
  let metadata: Upload['metadata'];
  try {
    metadata = ctx.get('Upload-Metadata') ? Metadata.parse(ctx.get('Upload-Metadata')) : undefined;
  } catch {
    return undefined;
  }
  const { filename, type } = declaredFile(metadata);
  return {
    uploadId: undefined,
    declared: { filename: sanitizeFilename(filename), claimedType: type, size },
    policy: narrowPolicy(config.typePolicy, ctx.state.caller.limits),
    wanted: firstBytesWanted(size),
    stored: Buffer.alloc(0),
  };
}

function lengthOf(header: string): number | undefined {
  return /^\d+$/.test(header) ? Number(header) : undefined;
}

/**
 * Reads the body until `wanted` bytes (or its end) have arrived, then pauses it. A request that
 * fails meanwhile gives what it had: @tus/server sees the failure when it reads on.
 */
function readAhead(req: Readable, wanted: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const done = () => {
      req.pause();
      req.off('data', onData).off('end', done).off('error', done).off('close', done);
      resolve(Buffer.concat(chunks));
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.length;
      if (length >= wanted) done();
    };
    req.on('data', onData).on('end', done).on('error', done).on('close', done);
  });
}
