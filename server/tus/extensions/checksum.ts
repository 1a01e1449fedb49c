import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { crc32 } from 'node:zlib';
import type { HookContext } from '../../../hooks/hookContext.ts';
import { processTempPath } from '../../infra/processes/processTempFiles.ts';
import { closeAfterAnswer } from '../../http/lingeringClose.ts';
import type { TusExtension } from '../tusExtension.ts';
import type { TusRequest } from '../tusRequest.ts';
import { headerInteger, OCTET_STREAM, refuseTusRequest } from '../tusWire.ts';

/** A running digest over a request body. */
interface Digest {
  update(chunk: Buffer): void;
  digest(): Buffer;
}

const hash = (name: string) => (): Digest => createHash(name);

/** zlib's CRC-32 (IEEE, as tus clients compute it), as the 4 bytes big-endian that Upload-Checksum carries in base64. */
function crc32Digest(): Digest {
  let value = 0;
  return {
    update: (chunk) => void (value = crc32(chunk, value)),
    digest: () => {
      const out = Buffer.alloc(4);
      out.writeUInt32BE(value >>> 0);
      return out;
    },
  };
}

/**
 * "The Server MUST support at least the SHA1 checksum algorithm identified by `sha1`. The names of
 * the checksum algorithms MUST only consist of ASCII characters with the modification that
 * uppercase characters are excluded."
 */
const algorithms: Record<string, { digest: () => Digest; bytes: number }> = {
  md5: { digest: hash('md5'), bytes: 16 },
  sha1: { digest: hash('sha1'), bytes: 20 },
  sha256: { digest: hash('sha256'), bytes: 32 },
  crc32: { digest: crc32Digest, bytes: 4 },
};
const supported = Object.keys(algorithms).join(',');

export interface Expected {
  algorithm: string;
  digest: Buffer;
}

/**
 * "The header MUST consist of the name of the used checksum algorithm and the Base64 encoded
 * checksum separated by a space." Why not, when it does not.
 */
export function parseChecksum(header: string): Expected | string {
  const match = /^(\S+) ([A-Za-z0-9+/]+={0,2})$/.exec(header.trim());
  if (!match) return `Upload-Checksum must be "<algorithm> <base64 checksum>", not "${header}"`;
  const [, algorithm, base64] = match as unknown as [string, string, string];
  const known = algorithms[algorithm];
  // "400 Bad Request if the checksum algorithm is not supported by the server"
  if (!known) return `Upload-Checksum algorithm ${algorithm} is not supported; Tus-Checksum-Algorithm: ${supported}`;
  const digest = Buffer.from(base64, 'base64');
  if (digest.length !== known.bytes) return `Upload-Checksum: a ${algorithm} checksum is ${known.bytes} bytes, this one ${digest.length}`;
  return { algorithm, digest };
}

/**
 * The checksum extension for PATCH (and a creation-with-upload POST). "Once the entire request has
 * been received, the Server MUST verify the uploaded chunk against the provided checksum using the
 * specified algorithm … In the first two cases [400, 460] the uploaded chunk MUST be discarded,
 * and the upload and its offset MUST NOT be updated." So a checksummed body goes to a temp file,
 * hashed as it streams, bounded by what the upload may still take; only a verified body reaches
 * the store, from that file: a mismatch, or a request cut or timed out (PATCH_IDLE_TIMEOUT) before
 * its whole body arrived, leaves the store untouched. On S3 no part is committed before that.
 */
export function checksum({ config, log }: HookContext): TusExtension {
  return {
    name: 'checksum',
    // "If supported, the Server MUST add `checksum` to the `Tus-Extension` header." "The
    // `Tus-Checksum-Algorithm` header MUST be included in the response to an `OPTIONS` request."
    announces: { extension: 'checksum', headers: { 'Tus-Checksum-Algorithm': supported }, requestHeaders: ['Upload-Checksum'] },
    before: async (ctx, request, next) => {
      const { method, headers } = request.engine;
      const header = headers.get('Upload-Checksum');
      const carriesBody = method === 'PATCH' || (method === 'POST' && headers.get('Content-Type') === OCTET_STREAM);
      if (!header || !carriesBody) return next();
      const expected = parseChecksum(header);
      if (typeof expected === 'string') {
        refuseTusRequest(ctx, 400, expected);
        return closeAfterAnswer(ctx);
      }
      const limit = bodyLimit(request, config.maxUploadSize);
      const declared = request.store.bodyLength;
      if (declared !== undefined && declared > limit) {
        refuseTusRequest(ctx, 413, `The body (${declared} bytes) is longer than what this upload may still take (${limit} bytes)`);
        return closeAfterAnswer(ctx);
      }
      // Named for this process: what a crash leaves is removed at the next start (processTempFiles.ts).
      const file = processTempPath('tus-checksum', randomUUID());
      try {
        const received = await receiveBody(request, file, algorithms[expected.algorithm]!.digest(), limit);
        const upload = request.upload?.id ?? request.partial?.id;
        if (received === 'cut') {
          // Nobody is left to answer: the connection is gone, and nothing of the body was kept.
          log.info({ upload, algorithm: expected.algorithm }, 'checksummed request cut before its whole body arrived; nothing kept');
          ctx.respond = false;
          return;
        }
        if (!received.equals(expected.digest)) {
          log.info({ upload, algorithm: expected.algorithm }, 'checksum mismatch; the body was discarded');
          // "460 Checksum Mismatch if the checksums mismatch"
          refuseTusRequest(ctx, 460, `Checksum Mismatch: the body's ${expected.algorithm} is ${received.toString('base64')}, Upload-Checksum says ${expected.digest.toString('base64')}; nothing of it was kept`);
          ctx.message = 'Checksum Mismatch';
          return;
        }
        request.body = createReadStream(file, { highWaterMark: 256 * 1024 });
        await next();
      } finally {
        await fs.rm(file, { force: true });
      }
    },
  };
}

/** The bytes a body may have: what the upload still lacks, within the largest size any upload may have. */
function bodyLimit({ upload, partial, engine }: TusRequest, maxUploadSize: number): number {
  const size = upload?.size ?? partial?.size ?? headerInteger(engine.headers.get('Upload-Length')) ?? maxUploadSize;
  const offset = engine.method === 'PATCH' ? (headerInteger(engine.headers.get('Upload-Offset')) ?? 0) : 0;
  return Math.max(0, Math.min(size, maxUploadSize) - offset);
}

class TooLong extends Error {}

/** Streams the body into `file` through the digest; 'cut' when the request ended before the body did (or ran past `limit`). */
async function receiveBody({ body, node }: TusRequest, file: string, digest: Digest, limit: number): Promise<Buffer | 'cut'> {
  let bytes = 0;
  try {
    await pipeline(
      body,
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          bytes += chunk.length;
          if (bytes > limit) throw new TooLong();
          digest.update(chunk);
          yield chunk;
        }
      },
      createWriteStream(file),
    );
  } catch (error) {
    // A chunked body running past the limit ends the connection: it cannot be answered mid-way.
    if (error instanceof TooLong || !node.req.complete) return 'cut';
    throw error;
  }
  return digest.digest();
}
