import { Readable } from 'node:stream';
import type { Part } from '@aws-sdk/client-s3';
import { S3Store, type MetadataValue } from '@tus/s3-store';
import { Upload } from '@tus/utils';
import { currentStoreRequest } from './storeRequest.ts';

/** What S3 holds of an unfinished upload: its whole parts, and the bytes kept in `<id>.part`. */
interface Listing {
  parts: Part[];
  incompleteSize: number;
}

/** A request's note on an upload: what it listed, and whether it wrote since (then the note is the truth). */
interface ListingNote extends Listing {
  written: boolean;
}

/**
 * @tus/s3-store, with a PATCH's whole parts streamed to S3 as they arrive instead of through a
 * temp file each, and without asking S3 again what this request already knows. A body whose
 * length its request declares is cut into parts ahead: each part of a known length is an
 * UploadPart whose body is the request's own bytes. What does not fill a part (a chunked client's
 * body, a stored `.part` to prepend, a body of unknown length) takes @tus/s3-store's own path.
 * A part that stops short (the connection dropped, or the lock was handed to a newer request) is
 * abandoned, as @tus/s3-store abandons a part cut by a dropped connection: the offset then is the
 * last whole part's end, and the client resumes from there.
 */
export class S3UploadStore extends S3Store {
  /** The info object changes only when a deferred length is declared (maybe on another instance): cache the rest. */
  protected override async getMetadata(id: string): Promise<MetadataValue> {
    const cached = await this.cache.get(id);
    if (cached && cached.file.size === undefined) await this.cache.delete(id);
    return super.getMetadata(id);
  }

  /** Keeps what it saved: the request that created an upload does not read its info back. */
  protected override async saveMetadata(upload: Upload, uploadId: string): Promise<void> {
    await super.saveMetadata(upload, uploadId);
    await this.cache.set(upload.id, { file: upload, 'upload-id': uploadId, 'tus-version': '1.0.0' });
  }

  override async create(upload: Upload): Promise<Upload> {
    const created = await super.create(upload);
    note(upload.id, { parts: [], incompleteSize: 0, written: true });
    return created;
  }

  /**
   * Lists the upload unless this request wrote it since it last looked. A listing made before the
   * upload's lock was taken (the first-bytes check) is kept only for `write`, which the PATCH
   * handler always precedes with a listing of its own under the lock.
   */
  override async getUpload(id: string): Promise<Upload> {
    const known = noteOf(id);
    if (!known?.written) return super.getUpload(id);
    const metadata = await this.getMetadata(id);
    return new Upload({ ...metadata.file, offset: offsetOf(known), size: metadata.file.size, storage: metadata.file.storage });
  }

  protected override async retrieveParts(id: string, partNumberMarker?: string): Promise<Part[]> {
    const parts = await super.retrieveParts(id, partNumberMarker);
    if (!partNumberMarker) note(id, { parts, incompleteSize: 0, written: false });
    return parts;
  }

  protected override async getIncompletePartSize(id: string): Promise<number | undefined> {
    const size = await super.getIncompletePartSize(id);
    const known = noteOf(id);
    if (known) note(id, { ...known, incompleteSize: size ?? 0 });
    return size;
  }

  override async write(src: Readable, id: string, offset: number): Promise<number> {
    const request = currentStoreRequest();
    const known = noteOf(id);
    forget(id);
    // Parts are planned from the body's length, and a stored `.part` goes before the new bytes.
    if (request?.bodyLength === undefined || !known || offsetOf(known) !== offset || known.incompleteSize > 0) {
      const reached = await super.write(src, id, offset);
      forget(id);
      return reached;
    }
    const metadata = await this.getMetadata(id);
    const size = metadata.file.size;
    const partSize = this.calcOptimalPartSize(size);
    const body = new BodyReader(src);
    const streamed: Part[] = [];
    let partNumber = Math.max(0, ...known.parts.map((part) => part.PartNumber ?? 0)) + 1;
    let position = offset;
    let left = request.bodyLength;
    for (;;) {
      const length = size === undefined ? partSize : Math.min(partSize, size - position);
      if (length <= 0 || length > left) break;
      const part = await this.streamPart(metadata, body, partNumber, length);
      if (!part) return finish(offset + sum(streamed), { parts: [...known.parts, ...streamed], incompleteSize: 0 });
      streamed.push(part);
      partNumber++;
      position += length;
      left -= length;
    }
    const parts = [...known.parts, ...streamed];
    // Less than a part left in this body: @tus/s3-store keeps it in `<id>.part` until the next request.
    const tail = left > 0 ? await this.uploadParts(metadata, body.rest(), partNumber, position) : 0;
    const newOffset = position + tail;
    if (size === newOffset) {
      await this.finishMultipartUpload(metadata, tail > 0 ? await this.retrieveParts(id) : parts);
      await this.completeMetadata(metadata.file);
      await this.clearCache(id);
      forget(id);
      return newOffset;
    }
    return finish(newOffset, tail > 0 ? undefined : { parts, incompleteSize: 0 });

    function finish(reached: number, listing: Listing | undefined): number {
      if (listing) note(id, { ...listing, written: true });
      return reached;
    }
  }

  /**
   * Sends the next `length` bytes of the body as part `partNumber`. Resolves with the part once
   * S3 holds it, or undefined when the body ended first (nothing of the part is kept); rejects when
   * the body failed (the client's connection dropped) or S3 refused the part.
   */
  private async streamPart(metadata: MetadataValue, body: BodyReader, partNumber: number, length: number): Promise<Part | undefined> {
    const permit = await this.partUploadSemaphore.acquire();
    const abort = new AbortController();
    // The SDK pipes the body into its request, and a pipe does not pass a source's failure on.
    const source = Readable.from(body.take(length), { objectMode: false }).once('error', (error) => abort.abort(error));
    try {
      const { ETag } = await this.client.uploadPart(
        { Bucket: this.bucket, Key: metadata.file.id, UploadId: metadata['upload-id'], PartNumber: partNumber, Body: source, ContentLength: length },
        { abortSignal: abort.signal },
      );
      return { PartNumber: partNumber, ETag, Size: length };
    } catch (error) {
      if (abort.signal.reason instanceof BodyEnded) return undefined;
      throw abort.signal.aborted ? abort.signal.reason : error;
    } finally {
      source.destroy();
      await permit.release();
    }
  }
}

/** The body ended before the bytes a part was promised. */
class BodyEnded extends Error {}

/** Reads a body in pieces of exact lengths, chunk by chunk as it arrives (no copies). */
class BodyReader {
  private readonly chunks: AsyncIterator<Buffer>;
  private leftover: Buffer | undefined;

  constructor(src: Readable) {
    this.chunks = src[Symbol.asyncIterator]();
  }

  async *take(length: number): AsyncGenerator<Buffer> {
    let left = length;
    while (left > 0) {
      const chunk = this.leftover ?? (await this.chunks.next()).value;
      this.leftover = undefined;
      if (!chunk) throw new BodyEnded(`the body ended ${left} bytes short of a part`);
      if (chunk.length > left) this.leftover = chunk.subarray(left);
      yield chunk.length > left ? chunk.subarray(0, left) : chunk;
      left -= Math.min(left, chunk.length);
    }
  }

  /** The rest of the body, from where the parts taken so far ended. */
  rest(): Readable {
    const { chunks } = this;
    let first = this.leftover;
    this.leftover = undefined;
    return Readable.from(
      (async function* () {
        if (first) yield first;
        first = undefined;
        for (let next = await chunks.next(); !next.done; next = await chunks.next()) yield next.value;
      })(),
      { objectMode: false },
    );
  }
}

function offsetOf(listing: Listing): number {
  return sum(listing.parts) + listing.incompleteSize;
}

function sum(parts: Part[]): number {
  return parts.reduce((total, part) => total + (part.Size ?? 0), 0);
}

function noteOf(id: string): ListingNote | undefined {
  return currentStoreRequest()?.notes.get(id) as ListingNote | undefined;
}

function note(id: string, listing: ListingNote): void {
  currentStoreRequest()?.notes.set(id, listing);
}

function forget(id: string): void {
  currentStoreRequest()?.notes.delete(id);
}
