import { createReadStream } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { Part } from '@aws-sdk/client-s3';
import { S3Store, type MetadataValue, type Options } from '@tus/s3-store';
import { TUS_RESUMABLE, Upload } from '@tus/utils';
import { noStoreRequest, type StoreRequestOf } from './storeRequest.ts';

/** What S3 holds of an unfinished upload: its whole parts, and the bytes kept in `<id>.part`. */
interface Listing {
  parts: Part[];
  incompleteSize: number;
}

/** A request's note on an upload: what it listed, and whether it wrote since (then the note is the truth). */
interface ListingNote extends Listing {
  written: boolean;
}

interface StreamOptions {
  /** A streamed part whose bytes stop coming this long goes on from its copy (S3 closes a request idle ~20 s). */
  streamIdleMs: number;
  /** Memory for the copies of all streamed parts at once; past it they go to temp files. */
  streamBufferBytes: number;
  /** Parts streamed at once; more go through their copies. */
  maxStreams?: number;
  /** The tus request a call serves: its body's length, and notes kept for the rest of it. */
  requestOf?: StoreRequestOf;
}

/** How a part of the body ended: stored whole, or cut short with what arrived kept (and why it was cut). */
type PartOutcome = { stored: Part } | { kept: Listing; failure: unknown };

/**
 * @tus/s3-store, with a PATCH's whole parts streamed to S3 as they arrive instead of written to a
 * temp file and read back, and without asking S3 again what the request already knows.
 *
 * A body whose request declares its length is cut into parts ahead; each part of a known length
 * is an UploadPart whose body is the request's own bytes. Until S3 holds the part its bytes are
 * kept (in memory within `streamBufferBytes` for all parts at once, else in a temp file) and read
 * only when the stream to S3 stopped: a body that ends or drops mid-part keeps what arrived (as
 * `<id>.part`, as @tus/s3-store would), and a part whose bytes stop coming for `streamIdleMs` (a
 * stalled phone) goes on into its copy and is sent from there, as are the parts that find
 * `maxStreams` parts streaming already. What does not fill a part (a chunked client's body, a stored `.part` to
 * prepend, a body of unknown length) takes @tus/s3-store's own path.
 */
export class S3UploadStore extends S3Store {
  private readonly streamIdleMs: number;
  private readonly memory: SlabPool;
  private readonly maxStreams: number;
  private streams = 0;

  private readonly requestOf: StoreRequestOf;

  constructor({ streamIdleMs, streamBufferBytes, maxStreams = maxStreamedParts, requestOf = noStoreRequest, ...options }: Options & StreamOptions) {
    super(options);
    this.streamIdleMs = streamIdleMs;
    this.memory = new SlabPool(streamBufferBytes);
    this.maxStreams = maxStreams;
    this.requestOf = requestOf;
  }

  private noteOf(id: string): ListingNote | undefined {
    return this.requestOf()?.notes.get(id) as ListingNote | undefined;
  }

  private note(id: string, listing: ListingNote): void {
    this.requestOf()?.notes.set(id, listing);
  }

  private forget(id: string): void {
    this.requestOf()?.notes.delete(id);
  }

  /** The info object changes only when a deferred length is declared (maybe on another instance): cache the rest. */
  protected override async getMetadata(id: string): Promise<MetadataValue> {
    const cached = await this.cache.get(id);
    if (cached && cached.file.size === undefined) await this.cache.delete(id);
    return super.getMetadata(id);
  }

  /** Keeps what it saved: the request that created an upload does not read its info back. */
  protected override async saveMetadata(upload: Upload, uploadId: string): Promise<void> {
    await super.saveMetadata(upload, uploadId);
    await this.cache.set(upload.id, { file: upload, 'upload-id': uploadId, 'tus-version': TUS_RESUMABLE });
  }

  override async create(upload: Upload): Promise<Upload> {
    const created = await super.create(upload);
    this.note(upload.id, { parts: [], incompleteSize: 0, written: true });
    return created;
  }

  /**
   * Lists the upload unless this request wrote it since it last looked. A listing made before the
   * upload's lock was taken (the first-bytes check) is kept only for `write`, which the PATCH
   * handler always precedes with a listing of its own under the lock.
   */
  override async getUpload(id: string): Promise<Upload> {
    const known = this.noteOf(id);
    if (!known?.written) return super.getUpload(id);
    const metadata = await this.getMetadata(id);
    return new Upload({ ...metadata.file, offset: offsetOf(known), size: metadata.file.size, storage: metadata.file.storage });
  }

  protected override async retrieveParts(id: string, partNumberMarker?: string): Promise<Part[]> {
    const parts = await super.retrieveParts(id, partNumberMarker);
    if (!partNumberMarker) this.note(id, { parts, incompleteSize: 0, written: false });
    return parts;
  }

  protected override async getIncompletePartSize(id: string): Promise<number | undefined> {
    const size = await super.getIncompletePartSize(id);
    const known = this.noteOf(id);
    if (known) this.note(id, { ...known, incompleteSize: size ?? 0 });
    return size;
  }

  override async write(src: Readable, id: string, offset: number): Promise<number> {
    const bodyLength = this.requestOf()?.bodyLength;
    const known = this.noteOf(id);
    this.forget(id);
    // Parts are planned from the body's length, and a stored `.part` goes before the new bytes.
    if (bodyLength === undefined || !known || offsetOf(known) !== offset || known.incompleteSize > 0) {
      const reached = await super.write(src, id, offset);
      this.forget(id);
      return reached;
    }
    const metadata = await this.getMetadata(id);
    const size = metadata.file.size;
    const partSize = this.calcOptimalPartSize(size);
    const body = new BodyReader(src);
    const parts = [...known.parts];
    let position = offset;
    let left = bodyLength;
    for (;;) {
      const length = size === undefined ? partSize : Math.min(partSize, size - position);
      if (length <= 0 || length > left) break;
      const outcome = await this.storePart(metadata, body, nextPartNumber(parts), length);
      if ('kept' in outcome) {
        this.note(id, { parts: [...parts, ...outcome.kept.parts], incompleteSize: outcome.kept.incompleteSize, written: true });
        if (outcome.failure) throw outcome.failure;
        return offsetOf(this.noteOf(id)!);
      }
      parts.push(outcome.stored);
      position += length;
      left -= length;
    }
    // Less than a part left in this body: @tus/s3-store keeps it in `<id>.part` until the next request.
    const tail = left > 0 ? await this.uploadParts(metadata, body.rest(), nextPartNumber(parts), position) : 0;
    const reached = position + tail;
    if (size === reached) {
      await this.finishMultipartUpload(metadata, tail > 0 ? await this.retrieveParts(id) : parts);
      await this.completeMetadata(metadata.file);
      await this.clearCache(id);
      this.forget(id);
    } else if (tail === 0) {
      this.note(id, { parts, incompleteSize: 0, written: true });
    }
    return reached;
  }

  /** The next `length` bytes of the body as part `partNumber`: streamed, or finished from its copy. */
  private async storePart(metadata: MetadataValue, body: BodyReader, partNumber: number, length: number): Promise<PartOutcome> {
    const copy = new PartCopy(this.memory, () => this.uniqueTmpFileName('tus-s3-part-'));
    try {
      const streamed = this.streams < this.maxStreams ? await this.streamPart(metadata, body, copy, partNumber, length) : { failure: new NoStream() };
      if ('stored' in streamed) return streamed;
      let failure = streamed.failure;
      // S3 stopped, the body paused too long, or no stream was free: the rest of the part goes into the copy only.
      if (!isBodyFailure(failure)) {
        failure = undefined;
        try {
          for await (const piece of body.take(length - copy.size, copy));
        } catch (error) {
          failure = error;
        }
      }
      if (copy.size === length || copy.size >= this.minPartSize) {
        const part = await this.sendPart(metadata, partNumber, await copy.reader(), copy.size);
        return copy.size === length ? { stored: part } : { kept: { parts: [part], incompleteSize: 0 }, failure: bodyFailure(failure) };
      }
      if (copy.size > 0) {
        const Key = this.partKey(metadata.file.id, true);
        await this.client.putObject({ Bucket: this.bucket, Key, Body: await copy.reader(), ContentLength: copy.size, Tagging: this.useCompleteTag('false') });
      }
      return { kept: { parts: [], incompleteSize: copy.size }, failure: bodyFailure(failure) };
    } finally {
      await copy.release();
    }
  }

  private async sendPart(metadata: MetadataValue, partNumber: number, body: Readable, length: number, abortSignal?: AbortSignal): Promise<Part> {
    const { ETag } = await this.client.uploadPart(
      { Bucket: this.bucket, Key: metadata.file.id, UploadId: metadata['upload-id'], PartNumber: partNumber, Body: body, ContentLength: length },
      { abortSignal },
    );
    return { PartNumber: partNumber, ETag, Size: length };
  }

  /** One UploadPart fed from the body as it arrives (and into `copy`); resolves with the part or why it stopped. */
  private async streamPart(
    metadata: MetadataValue,
    body: BodyReader,
    copy: PartCopy,
    partNumber: number,
    length: number,
  ): Promise<{ stored: Part } | { failure: unknown }> {
    this.streams++;
    const abort = new AbortController();
    const pieces = body.take(length, copy);
    // The SDK pipes the body into its request, and a pipe does not pass a source's failure on.
    const source = Readable.from(pieces, { objectMode: false }).once('error', (error) => abort.abort(error));
    let seen = -1;
    const idle = setInterval(() => {
      if (copy.size === seen) abort.abort(new NoStream(`no byte for ${this.streamIdleMs} ms`));
      seen = copy.size;
    }, this.streamIdleMs);
    try {
      return { stored: await this.sendPart(metadata, partNumber, source, length, abort.signal) };
    } catch (error) {
      return { failure: abort.signal.aborted ? abort.signal.reason : error };
    } finally {
      clearInterval(idle);
      source.destroy();
      // Until the pieces are done with the body, nothing else may read it.
      await pieces.return(undefined).catch(() => undefined);
      this.streams--;
    }
  }
}

const copyBatchBytes = 256 * 1024;

/**
 * Parts streamed at once, per process: each holds one of the SDK agent's 50 sockets for as long
 * as its client takes (minutes for a slow phone); the others stay for parts sent from their copies.
 */
const maxStreamedParts = 32;

/** A part not streamed, or not to the end: none was free, or its body paused longer than `streamIdleMs`. */
class NoStream extends Error {}

/** The body ended before the bytes its request declared. */
class BodyEnded extends Error {}

/** Whether a part stopped because of the client's body (ended or dropped), not S3 or a pause. */
function isBodyFailure(failure: unknown): boolean {
  return failure instanceof BodyEnded || (failure instanceof Error && failure.name === 'AbortError');
}

/** What `write` reports of a body that stopped: a clean early end is not an error (the offset says it). */
function bodyFailure(failure: unknown): unknown {
  return failure instanceof BodyEnded ? undefined : failure;
}

function nextPartNumber(parts: Part[]): number {
  return Math.max(0, ...parts.map((part) => part.PartNumber ?? 0)) + 1;
}

/** Reads a body in pieces of exact lengths, chunk by chunk as it arrives (no copies). */
class BodyReader {
  private readonly chunks: AsyncIterator<Buffer>;
  private leftover: Buffer | undefined;

  constructor(src: Readable) {
    this.chunks = src[Symbol.asyncIterator]();
  }

  /** The next `length` bytes; with a `copy`, what it says to send once each piece is in it. */
  async *take(length: number, copy?: PartCopy): AsyncGenerator<Buffer, void, undefined> {
    let left = length;
    while (left > 0) {
      const chunk = this.leftover ?? (await this.chunks.next()).value;
      this.leftover = undefined;
      if (!chunk) throw new BodyEnded(`the body ended ${left} bytes short`);
      if (chunk.length > left) this.leftover = chunk.subarray(left);
      const piece = chunk.length > left ? chunk.subarray(0, left) : chunk;
      left -= piece.length;
      const copying = copy?.add(piece);
      if (copying) await copying;
      if (!copy) yield piece;
      else for (const out of copy.out(left === 0)) yield out;
    }
  }

  /** The rest of the body, from where the pieces taken so far ended. */
  rest(): Readable {
    const { chunks } = this;
    const first = this.leftover;
    this.leftover = undefined;
    return Readable.from(
      (async function* () {
        if (first) yield first;
        for (let next = await chunks.next(); !next.done; next = await chunks.next()) yield next.value;
      })(),
      { objectMode: false },
    );
  }
}

/**
 * Memory for the copies of streamed parts: slabs of 256 KiB, at most `bytes` of them lent at once,
 * reused from part to part and let go after a while without parts. Copying into long-lived slabs
 * costs a memcpy; keeping the request's own chunks instead made them outlive V8's young
 * generation, and the full GCs that then freed them cost more than the copy.
 */
class SlabPool {
  private idle: Buffer[] = [];
  private lent = 0;
  private readonly letGo = setTimeout(() => {
    if (this.lent === 0) this.idle = [];
  }, 10_000).unref();

  private readonly bytes: number;

  constructor(bytes: number) {
    this.bytes = bytes;
  }

  take(): Buffer | undefined {
    if ((this.lent + 1) * copyBatchBytes > this.bytes) return undefined;
    this.lent++;
    return this.idle.pop() ?? Buffer.allocUnsafeSlow(copyBatchBytes);
  }

  give(slabs: Buffer[]): void {
    this.lent -= slabs.length;
    this.idle.push(...slabs);
    if (this.lent === 0) this.letGo.refresh();
  }
}

/**
 * A part's bytes as they went by, until S3 holds the part: in slabs of the pool while it has
 * some, else in a temp file written 256 KiB per call (larger writes are slower here, smaller ones
 * cost a call each).
 */
class PartCopy {
  size = 0;
  private slabs: Buffer[] = [];
  /** Bytes used of the last slab. */
  private filled = copyBatchBytes;
  /** Slabs handed on to be sent (all, once in a file). */
  private slabsOut = 0;
  /** Once in a file: the pieces not written yet, and those not handed on yet. */
  private pieces: Buffer[] = [];
  private unsent: Buffer[] = [];
  private piecesBytes = 0;
  private file: { path: string; handle: FileHandle } | undefined;

  private readonly memory: SlabPool;
  private readonly tempFileName: () => Promise<string>;

  constructor(
    memory: SlabPool,
    tempFileName: () => Promise<string>,
  ) {
    this.memory = memory;
    this.tempFileName = tempFileName;
  }

  /** Returns a promise only when it writes to the file (the memory path costs no turn of the event loop). */
  add(piece: Buffer): Promise<void> | undefined {
    this.size += piece.length;
    const rest = this.file ? piece : this.copyIn(piece);
    if (rest.length === 0) return undefined;
    this.pieces.push(rest);
    this.unsent.push(rest);
    this.piecesBytes += rest.length;
    return this.file && this.piecesBytes < copyBatchBytes ? undefined : this.write();
  }

  /**
   * What to send on: whole slabs (a socket write of 256 KiB rather than one per 64 KiB chunk), the
   * last one at the part's end; once in a file, every slab and then the pieces as they come.
   */
  out(final: boolean): Buffer[] {
    const ready = final || this.file || this.filled === copyBatchBytes ? this.slabs.length : this.slabs.length - 1;
    const views = this.held().slice(this.slabsOut, Math.max(this.slabsOut, ready));
    this.slabsOut = Math.max(this.slabsOut, ready);
    views.push(...this.unsent);
    this.unsent = [];
    return views;
  }

  async reader(): Promise<Readable> {
    if (!this.file) return Readable.from(this.held(), { objectMode: false });
    await this.write();
    return createReadStream(this.file.path, { highWaterMark: copyBatchBytes });
  }

  async release(): Promise<void> {
    this.memory.give(this.slabs);
    this.slabs = [];
    if (!this.file) return;
    await this.file.handle.close().catch(() => undefined);
    await fs.rm(this.file.path, { force: true });
  }

  /** Copies what the pool has room for; returns the rest. */
  private copyIn(piece: Buffer): Buffer {
    let at = 0;
    while (at < piece.length) {
      if (this.filled === copyBatchBytes) {
        const slab = this.memory.take();
        if (!slab) break;
        this.slabs.push(slab);
        this.filled = 0;
      }
      const copied = piece.copy(this.slabs.at(-1)!, this.filled, at);
      this.filled += copied;
      at += copied;
    }
    return piece.subarray(at);
  }

  /** The bytes in the slabs, in order. */
  private held(): Buffer[] {
    return this.slabs.map((slab, i) => (i === this.slabs.length - 1 ? slab.subarray(0, this.filled) : slab));
  }

  /** Into the file: the slabs first (given back with the part: some may not be sent yet), then the pieces. */
  private async write(): Promise<void> {
    if (!this.file) {
      const path = await this.tempFileName();
      this.file = { path, handle: await fs.open(path, 'w') };
      const held = this.held();
      this.pieces.unshift(...held);
      this.piecesBytes += held.reduce((total, slab) => total + slab.length, 0);
    }
    const { handle, path } = this.file;
    while (this.pieces.length > 0) {
      let bytes = 0;
      let count = 0;
      while (count < this.pieces.length && (count === 0 || bytes + this.pieces[count]!.length <= copyBatchBytes)) bytes += this.pieces[count++]!.length;
      const { bytesWritten } = await handle.writev(this.pieces.slice(0, count));
      if (bytesWritten !== bytes) throw new Error(`temp file ${path}: wrote ${bytesWritten} of ${bytes} bytes`);
      this.pieces.splice(0, count);
      this.piecesBytes -= bytes;
    }
  }
}

function offsetOf(listing: Listing): number {
  return listing.parts.reduce((total, part) => total + (part.Size ?? 0), 0) + listing.incompleteSize;
}
