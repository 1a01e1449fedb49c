import { createReadStream } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import { once } from 'node:events';
import { PassThrough, Readable } from 'node:stream';
import type { Part } from '@aws-sdk/client-s3';
import { S3Store, type MetadataValue, type Options } from '@tus/s3-store';
import { TUS_RESUMABLE, Upload } from '@tus/utils';
import { noStoreRequest, type StoreRequestOf } from './storeRequest.ts';
import { markStoreFailures } from './storeUnavailable.ts';

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
 * `maxStreams` parts streaming already. A part's bytes go into its copy as fast as the client
 * sends them (while the copy is in memory), and the next part starts once they are in: up to
 * `partsInFlight` parts of a body are on their way to S3 at once, each one's last bytes held
 * back until the one before is stored, so S3 holds a prefix of the parts whatever fails. What
 * does not fill a part (a chunked client's body, a stored `.part` to prepend, a body of unknown
 * length) takes @tus/s3-store's own path.
 */
export class S3UploadStore extends S3Store {
  private readonly streamIdleMs: number;
  private readonly memory: SlabPool;
  private readonly maxStreams: number;
  private streams = 0;

  private readonly requestOf: StoreRequestOf;

  constructor({ streamIdleMs, streamBufferBytes, maxStreams = maxStreamedParts, requestOf = noStoreRequest, ...options }: Options & StreamOptions) {
    super(options);
    markStoreFailures(this.client);
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

  /**
   * A creation that fails half-way (the multipart upload made, its info object refused) leaves no
   * multipart upload open behind it, if the store lets it be aborted; the expiry sweep takes any other.
   */
  override async create(upload: Upload): Promise<Upload> {
    const created = await super.create(upload).catch(async (error: unknown) => {
      await this.abortMultipartUploads(upload.id).catch(() => undefined);
      throw error;
    });
    this.note(upload.id, { parts: [], incompleteSize: 0, written: true });
    return created;
  }

  private async abortMultipartUploads(id: string): Promise<void> {
    const { Uploads = [] } = await this.client.listMultipartUploads({ Bucket: this.bucket, Prefix: id });
    for (const open of Uploads) {
      if (open.Key === id) await this.client.abortMultipartUpload({ Bucket: this.bucket, Key: id, UploadId: open.UploadId });
    }
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
    const firstPart = nextPartNumber(parts);
    // This body's parts, in order: each one starts once the one before is off the body.
    const sending: Promise<PartOutcome>[] = [];
    let turn = Promise.resolve(true);
    let stopped = false;
    let position = offset;
    let left = bodyLength;
    for (;;) {
      const length = size === undefined ? partSize : Math.min(partSize, size - position);
      if (length <= 0 || length > left) break;
      if (sending.length >= partsInFlight) await sending.at(-partsInFlight)!.catch(() => undefined);
      if (stopped) break;
      let onRead!: (whole: boolean) => void;
      const read = new Promise<boolean>((resolve) => (onRead = resolve));
      const outcome = this.storePart(metadata, body, firstPart + sending.length, length, turn, onRead);
      sending.push(outcome);
      turn = outcome.then((o) => 'stored' in o, () => false);
      void turn.then((stored) => (stopped ||= !stored));
      if (!(await read)) break;
      position += length;
      left -= length;
    }
    // The first part that did not store whole ends what S3 holds of this body (PartStream keeps the rest out).
    for (const settled of await Promise.allSettled(sending)) {
      if (settled.status === 'rejected') throw settled.reason;
      const outcome = settled.value;
      if ('stored' in outcome) {
        parts.push(outcome.stored);
        continue;
      }
      this.note(id, { parts: [...parts, ...outcome.kept.parts], incompleteSize: outcome.kept.incompleteSize, written: true });
      if (outcome.failure) throw outcome.failure;
      return offsetOf(this.noteOf(id)!);
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

  /**
   * The next `length` bytes of the body as part `partNumber`: streamed as they arrive, or sent
   * from their copy. `onRead` is told once they are off the body (false if it failed); S3 gets
   * the whole part only once `turn` says the part before is stored.
   */
  private async storePart(
    metadata: MetadataValue,
    body: BodyReader,
    partNumber: number,
    length: number,
    turn: Promise<boolean>,
    onRead: (whole: boolean) => void,
  ): Promise<PartOutcome> {
    const copy = new PartCopy(this.memory, () => this.uniqueTmpFileName('tus-s3-part-'));
    const stream = this.streams < this.maxStreams ? this.streamPart(metadata, partNumber, length, copy) : undefined;
    try {
      let failure: unknown;
      try {
        for await (const piece of body.take(length, copy)) await stream?.write(piece, copy.inFile);
      } catch (error) {
        failure = error;
        stream?.stop(error);
      }
      onRead(failure === undefined);
      if (!(await turn)) throw new PartDropped(`part ${partNumber}: a part before it was not stored`);
      if (stream && !failure) {
        const streamed = await stream.end();
        if ('stored' in streamed) return streamed;
      }
      // S3 stopped, the body paused too long, no stream was free, or the body failed: what arrived goes from the copy.
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
      onRead(false);
      // Its slabs may still be on their way to S3.
      stream?.stop(new PartDropped(`part ${partNumber}: given up`));
      await stream?.settled;
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

  /** One UploadPart fed from `copy` as the body's bytes go in; counted against `maxStreams` until it settles. */
  private streamPart(metadata: MetadataValue, partNumber: number, length: number, copy: PartCopy): PartStream {
    this.streams++;
    const stream = new PartStream((source, signal) => this.sendPart(metadata, partNumber, source, length, signal), copy, this.streamIdleMs);
    void stream.settled.then(() => this.streams--);
    return stream;
  }
}

/**
 * An UploadPart whose body is fed piece by piece. Its last piece waits for `end`: S3 stores a
 * part only once it has all of its bytes, so a part held back this way until the part before
 * it is stored cannot leave a gap in the parts S3 holds if that one fails.
 */
class PartStream {
  readonly settled: Promise<{ stored: Part } | { failure: unknown }>;
  private readonly source = new PassThrough();
  private readonly abort = new AbortController();
  private held: Buffer | undefined;
  private done = false;

  constructor(send: (body: Readable, signal: AbortSignal) => Promise<Part>, copy: PartCopy, idleMs: number) {
    let seen = -1;
    const idle = setInterval(() => {
      if (copy.size === seen) this.stop(new NoStream(`no byte for ${idleMs} ms`));
      seen = copy.size;
    }, idleMs);
    this.settled = send(this.source, this.abort.signal).then(
      (stored) => ({ stored }),
      (error: unknown) => {
        // The SDK pipes the body into its request, and a pipe does not pass a request's failure back.
        this.stop(error);
        return { failure: this.abort.signal.reason };
      },
    );
    void this.settled.finally(() => {
      this.done = true;
      clearInterval(idle);
      this.source.destroy();
    });
  }

  /** Sends the piece before `piece`; with `wait`, only as fast as S3 takes them (the pieces are not copies). */
  async write(piece: Buffer, wait: boolean): Promise<void> {
    const previous = this.held;
    this.held = piece;
    if (!previous || this.abort.signal.aborted) return;
    if (!this.source.write(previous) && wait) await once(this.source, 'drain', { signal: this.abort.signal }).catch(() => undefined);
  }

  /** Sends the last piece; resolves with the part or why it stopped. */
  end(): Promise<{ stored: Part } | { failure: unknown }> {
    if (!this.abort.signal.aborted) this.source.end(this.held);
    return this.settled;
  }

  /** Gives the request up (no-op once it settled): S3 keeps nothing of it. */
  stop(reason: unknown): void {
    if (!this.done && !this.abort.signal.aborted) this.abort.abort(reason);
  }
}

const copyBatchBytes = 256 * 1024;

/**
 * Parts of one body on their way to S3 at once: as many as lib-storage's Upload sends, so that
 * S3's time to take one part overlaps the next ones (their copies bound the memory).
 */
const partsInFlight = 4;

/**
 * Parts streamed at once, per process: each holds one of the SDK agent's 50 sockets for as long
 * as its client takes (minutes for a slow phone); the others stay for parts sent from their copies.
 */
const maxStreamedParts = 32;

/** A streamed part given up: no byte came for `streamIdleMs` (a paused body, or a wait for the part before it). */
class NoStream extends Error {}

/** The body ended before the bytes its request declared. */
class BodyEnded extends Error {}

/** A part not sent because a part before it was not stored (S3 must hold a prefix of the parts). */
class PartDropped extends Error {}

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

  /** The next `length` bytes into `copy`, yielding what it says to send once each piece is in it. */
  async *take(length: number, copy: PartCopy): AsyncGenerator<Buffer, void, undefined> {
    let left = length;
    while (left > 0) {
      const chunk = this.leftover ?? (await this.chunks.next()).value;
      this.leftover = undefined;
      if (!chunk) throw new BodyEnded(`the body ended ${left} bytes short`);
      if (chunk.length > left) this.leftover = chunk.subarray(left);
      const piece = chunk.length > left ? chunk.subarray(0, left) : chunk;
      left -= piece.length;
      const copying = copy.add(piece);
      if (copying) await copying;
      for (const out of copy.out(left === 0)) yield out;
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

  get inFile(): boolean {
    return this.file !== undefined;
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
