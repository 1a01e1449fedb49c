import { Readable } from 'node:stream';
import { CompleteMultipartUploadCommand, GetObjectCommand, HeadObjectCommand, UploadPartCommand, UploadPartCopyCommand, type S3Client } from '@aws-sdk/client-s3';

const MiB = 1024 * 1024;
/** S3: every part of a multipart upload but the last is at least 5 MiB, and a part (copied or sent) at most 5 GiB. */
export const minPartSize = 5 * MiB;
const maxPartSize = 5 * 1024 * MiB;

/** A byte range [start, end) of one stored object. */
interface Piece {
  key: string;
  start: number;
  end: number;
}

/** One part of the final object: copied inside S3 from one partial (UploadPartCopy), or sent through this process. */
export type Segment = { kind: 'copy'; piece: Piece } | { kind: 'through'; pieces: Piece[] };

/**
 * The parts of a final object made of `parts` in order. A partial of at least 5 MiB (or the last
 * one, of any size) is copied inside S3; smaller ones are gathered and sent through until they
 * make up a 5 MiB part. Only a large partial that follows such an unfinished gathering gives up
 * its first bytes to complete it, so even splits (tus-js-client's) send no byte of one through.
 */
export function planSegments(parts: { key: string; size: number }[]): Segment[] {
  const segments: Segment[] = [];
  let gathered: Piece[] = [];
  let gatheredBytes = 0;
  const flush = () => {
    if (gatheredBytes > 0) segments.push({ kind: 'through', pieces: gathered });
    gathered = [];
    gatheredBytes = 0;
  };
  parts.forEach(({ key, size }, index) => {
    const last = index === parts.length - 1;
    let start = 0;
    while (start < size) {
      const remaining = size - start;
      if (gatheredBytes > 0) {
        const take = Math.min(remaining, minPartSize - gatheredBytes);
        gathered.push({ key, start, end: start + take });
        gatheredBytes += take;
        start += take;
        if (gatheredBytes >= minPartSize) flush();
      } else if (remaining >= minPartSize || last) {
        // Past 5 GiB, copy in pieces that each leave at least 5 MiB for the rest.
        const take = remaining > maxPartSize ? Math.min(maxPartSize, remaining - minPartSize) : remaining;
        segments.push({ kind: 'copy', piece: { key, start, end: start + take } });
        start += take;
      } else {
        gathered.push({ key, start, end: size });
        gatheredBytes = remaining;
        start = size;
      }
    }
  });
  flush();
  return segments;
}

const length = (piece: Piece) => piece.end - piece.start;
const range = (piece: Piece) => `bytes=${piece.start}-${piece.end - 1}`;

/**
 * Fills the multipart upload @tus/s3-store opened for `target` (its id is in `<target>.info`)
 * with the partial objects and completes it, so the store then reports the upload complete.
 */
export async function concatenateObjects(client: S3Client, bucket: string, target: string, parts: { key: string; size: number }[]) {
  const info = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: `${target}.info` }));
  const UploadId = info.Metadata?.['upload-id'];
  if (!UploadId) throw new Error(`s3 object ${target}.info names no multipart upload`);
  let copiedInStore = 0;
  let passedThrough = 0;
  const completed: { PartNumber: number; ETag: string | undefined }[] = [];
  for (const [index, segment] of planSegments(parts).entries()) {
    const PartNumber = index + 1;
    if (segment.kind === 'copy') {
      const { piece } = segment;
      const { CopyPartResult } = await client.send(
        new UploadPartCopyCommand({ Bucket: bucket, Key: target, UploadId, PartNumber, CopySource: `${bucket}/${encodeURIComponent(piece.key)}`, CopySourceRange: range(piece) }),
      );
      completed.push({ PartNumber, ETag: CopyPartResult?.ETag });
      copiedInStore += length(piece);
    } else {
      const bytes = segment.pieces.reduce((sum, piece) => sum + length(piece), 0);
      const body = Readable.from(readPieces(client, bucket, segment.pieces), { objectMode: false });
      const { ETag } = await client.send(new UploadPartCommand({ Bucket: bucket, Key: target, UploadId, PartNumber, Body: body, ContentLength: bytes }));
      completed.push({ PartNumber, ETag });
      passedThrough += bytes;
    }
  }
  await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: target, UploadId, MultipartUpload: { Parts: completed } }));
  return { copiedInStore, passedThrough };
}

/** The pieces' bytes in order, one ranged GET at a time (streamed, never held whole). */
async function* readPieces(client: S3Client, bucket: string, pieces: Piece[]): AsyncGenerator<Uint8Array> {
  for (const piece of pieces) {
    const { Body } = await client.send(new GetObjectCommand({ Bucket: bucket, Key: piece.key, Range: range(piece) }));
    if (!Body) throw new Error(`s3 object ${piece.key} has no body`);
    yield* Body as Readable;
  }
}
