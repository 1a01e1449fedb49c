import type { Readable } from 'node:stream';
import { Metadata, type Upload } from '@tus/utils';
import { firstBytesWanted, refuseFirstBytes, rejectFromFirstBytes, type DeclaredFile } from '../../../hooks/firstBytes.ts';
import type { HookContext } from '../../../hooks/hookContext.ts';
import { sanitizeFilename } from '../../../hooks/sanitizeFilename.ts';
import { narrowPolicy } from '../../../hooks/typePolicy.ts';
import { declaredFile } from '../../../hooks/uploadMetadata.ts';
import { closeAfterAnswer } from '../../http/lingeringClose.ts';
import type { TypePolicy } from '../../infra/settings/config.ts';
import type { TusExtension } from '../tusExtension.ts';
import { callerOf, type TusRequest } from '../tusRequest.ts';
import { headerInteger, OCTET_STREAM, refuseTusRequest } from '../tusWire.ts';

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
 * the body (plus the chunk it came in), which @tus/server then gets first.
 */
export function firstBytes(context: HookContext): TusExtension {
  return {
    name: 'first bytes',
    before: async (ctx, request, next) => {
      // Partial uploads are never inspected; a final's first bytes are checked when it is created (hooks/concatenation.ts).
      if (request.concat || request.partial) return next();
      const { method } = request.engine;
      const check = method === 'PATCH' ? await resumedHead(context, request) : method === 'POST' ? creationHead(context, request) : undefined;
      if (!check) return next();
      const arriving = await readAhead(request.body, check.wanted - check.stored.length);
      const head = Buffer.concat([check.stored, arriving]);
      // Too few bytes yet to decide: a later PATCH completes the head.
      const refusal = head.length >= check.wanted ? await refuseFirstBytes(check.policy, check.declared, head.subarray(0, check.wanted)) : undefined;
      if (!refusal) {
        request.readAhead = arriving;
        return next();
      }
      if (check.uploadId) await rejectFromFirstBytes(context, check.uploadId, refusal);
      context.log.info({ upload: check.uploadId, owner: callerOf(request).owner, reason: refusal.reason }, 'first bytes refused');
      refuseTusRequest(ctx, 415, `Upload rejected: ${refusal.reason}`);
      closeAfterAnswer(ctx);
    },
  };
}

/** A PATCH to an upload whose stored head is shorter than the sample; undefined when there is nothing to check. */
async function resumedHead({ config, storage, log }: HookContext, { upload, engine }: TusRequest): Promise<HeadCheck | undefined> {
  if (!upload || upload.status !== 'uploading') return undefined;
  const size = upload.size ?? headerInteger(engine.headers.get('Upload-Length'));
  const wanted = firstBytesWanted(size);
  // The record's offset lags the store's, never leads it: past the sample here means checked.
  if (upload.offset >= wanted) return undefined;
  // Gone from the store, or at the wrong offset: @tus/server's to answer (404, 409), and it stores nothing.
  // A PATCH to offset 0 of an upload recorded at 0 needs no lookup: were the store ahead of the record,
  // @tus/server would answer 409 and store nothing, whatever this check made of the bytes.
  const requested = headerInteger(engine.headers.get('Upload-Offset'));
  const offset = upload.offset === 0 && requested === 0 ? 0 : (await storage.datastore.getUpload(upload.id).catch(() => undefined))?.offset;
  if (offset === undefined || offset >= wanted || requested !== offset) return undefined;
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
function creationHead({ config }: HookContext, request: TusRequest): HeadCheck | undefined {
  const { headers } = request.engine;
  // Without this Content-Type @tus/server ignores the body (spec fixes normalised it).
  if (headers.get('Content-Type') !== OCTET_STREAM) return undefined;
  const size = headerInteger(headers.get('Upload-Length'));
  // Upload-Length: 0 is refused by uploadCreate; a bad header or metadata by @tus/server.
  if (size === 0) return undefined;
  let metadata: Upload['metadata'];
  try {
    const header = headers.get('Upload-Metadata');
    metadata = header ? Metadata.parse(header) : undefined;
  } catch {
    return undefined;
  }
  const { filename, type } = declaredFile(metadata);
  return {
    uploadId: undefined,
    declared: { filename: sanitizeFilename(filename), claimedType: type, size },
    policy: narrowPolicy(config.typePolicy, callerOf(request).limits),
    wanted: firstBytesWanted(size),
    stored: Buffer.alloc(0),
  };
}

/**
 * Reads the body until `wanted` bytes (or its end) have arrived, then pauses it. A request that
 * fails meanwhile gives what it had: @tus/server sees the failure when it reads on.
 */
function readAhead(body: Readable, wanted: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const done = () => {
      body.pause();
      body.off('data', onData).off('end', done).off('error', done).off('close', done);
      resolve(Buffer.concat(chunks));
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.length;
      if (length >= wanted) done();
    };
    body.on('data', onData).on('end', done).on('error', done).on('close', done);
  });
}
