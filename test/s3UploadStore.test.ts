import { AsyncLocalStorage } from 'node:async_hooks';
// server/s3UploadStore.ts against radosgw: a PATCH's whole parts go to S3 straight from the body
// (no temp file), what does not fill a part takes @tus/s3-store's path, a body that stops short
// keeps every whole part and resumes whole, and a request does not ask S3 again what it knows.
import { createHash, randomBytes } from 'node:crypto';
import { ReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GetObjectCommand, ListObjectsV2Command, S3Client, type S3 } from '@aws-sdk/client-s3';
import { Upload } from '@tus/utils';
import { loadConfig } from '../server/infra/settings/config.ts';
import { S3UploadStore } from '../server/infra/store/s3UploadStore.ts';
import type { StoreRequest } from '../server/infra/store/storeRequest.ts';
import { createTestBucket, testS3ClientConfig } from './services/env.ts';

const MiB = 1024 * 1024;
const partSize = 5 * MiB;
const sha256 = (b: Buffer | Uint8Array) => createHash('sha256').update(b).digest('hex');

/** The body of a request: `buf` in 64 KiB chunks, failing with `fail` after `failAfter` bytes when given. */
function bodyOf(buf: Buffer, { failAfter, fail }: { failAfter?: number; fail?: Error } = {}): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < buf.length; i += 64 * 1024) {
        if (failAfter !== undefined && i >= failAfter) throw fail;
        yield buf.subarray(i, i + 64 * 1024);
      }
    })(),
    { objectMode: false },
  );
}

let s3: S3Client;
let bucket: string;
const defaultTmp = process.env.TMPDIR;

beforeAll(async () => {
  s3 = new S3Client(testS3ClientConfig());
  bucket = await createTestBucket();
});
afterAll(() => s3?.destroy());
afterEach(() => {
  if (defaultTmp === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = defaultTmp;
});

/** The tus request a store call serves, as the tus edge's request scope gives it. */
const requests = new AsyncLocalStorage<StoreRequest>();

function runStoreRequest<T>(bodyLength: number | undefined, serve: () => T): T {
  return requests.run({ bodyLength, notes: new Map() }, serve);
}

/**
 * A store and the S3 commands its client sends; a body sent from a temp file is marked `(file)`,
 * one streamed from the request `(stream)`.
 */
function makeStore({ streamIdleMs = 10_000, size = partSize, buffer = 64 * MiB, maxStreams = 32 } = {}): { store: S3UploadStore; commands: string[] } {
  const store = new S3UploadStore({ partSize: size, streamIdleMs, streamBufferBytes: buffer, maxStreams, requestOf: () => requests.getStore(), expirationPeriodInMilliseconds: 3_600_000, useTags: false, s3ClientConfig: { ...testS3ClientConfig(), bucket } });
  const commands: string[] = [];
  (store as unknown as { client: S3 }).client.middlewareStack.add(
    (next, context) => (args) => {
      const body = (args.input as { Body?: unknown }).Body;
      const from = body instanceof ReadStream ? ' (file)' : body instanceof Readable ? ' (stream)' : '';
      commands.push(`${(context.commandName as string).replace(/Command$/, '')}${from}`);
      return next(args);
    },
    { step: 'initialize' },
  );
  return { store, commands };
}

async function created(store: S3UploadStore, size: number | undefined): Promise<string> {
  const id = `up-${randomBytes(8).toString('hex')}`;
  await store.create(new Upload({ id, size, offset: 0 }));
  return id;
}

/** What @tus/server's PATCH handler does under the lock: the offset from the store, then the write. */
function patch(store: S3UploadStore, id: string, body: Readable, bodyLength: number | undefined): Promise<number> {
  return runStoreRequest(bodyLength, async () => {
    const { offset } = await store.getUpload(id);
    return store.write(body, id, offset);
  });
}

async function stored(id: string): Promise<Buffer> {
  const { Body } = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: id }));
  return Buffer.from(await Body!.transformToByteArray());
}

describe('S3UploadStore', () => {
  it('streams a whole body into parts as it arrives, and completes the object', async () => {
    const { store, commands } = makeStore();
    const data = randomBytes(2 * partSize + 123_456);
    const id = await created(store, data.length);
    commands.length = 0;
    expect(await patch(store, id, bodyOf(data), data.length)).toBe(data.length);
    expect(commands.filter((c) => c.startsWith('UploadPart'))).toEqual(['UploadPart (stream)', 'UploadPart (stream)', 'UploadPart (stream)']);
    expect(sha256(await stored(id))).toBe(sha256(data));
    expect((await makeStore().store.getUpload(id)).offset).toBe(data.length);
  });

  it('a chunked client (bodies shorter than a part) ends with the whole file', async () => {
    const { store, commands } = makeStore();
    const data = randomBytes(2 * partSize + 3 * MiB);
    const id = await created(store, data.length);
    for (let offset = 0; offset < data.length; offset += 3 * MiB) {
      const chunk = data.subarray(offset, offset + 3 * MiB);
      expect(await patch(store, id, bodyOf(chunk), chunk.length)).toBe(offset + chunk.length);
    }
    expect(commands.filter((c) => c.startsWith('UploadPart'))).toEqual(['UploadPart (file)', 'UploadPart (file)', 'UploadPart (file)']);
    expect(sha256(await stored(id))).toBe(sha256(data));
  });

  it('a body after a stored .part (which must go first) takes @tus/s3-store\'s path and completes whole', async () => {
    const { store } = makeStore();
    const data = randomBytes(4 * partSize);
    const id = await created(store, data.length);
    const first = data.subarray(0, 2 * MiB);
    expect(await patch(store, id, bodyOf(first), first.length)).toBe(first.length);
    const rest = data.subarray(first.length);
    expect(await patch(store, id, bodyOf(rest), rest.length)).toBe(data.length);
    expect(sha256(await stored(id))).toBe(sha256(data));
  });

  // The bytes of a streamed part are kept until S3 holds it: in memory, in a temp file, or first one then the other.
  for (const [copy, buffer, sentFrom] of [
    ['kept in memory', 64 * MiB, 'stream'],
    ['kept in a temp file', 0, 'file'],
    ['spilled from memory to a file', MiB, 'file'],
  ] as const) {
    it(`a body that ends short keeps its whole parts and what came of the next (${copy}); the client resumes there`, async () => {
      const { store } = makeStore({ buffer });
      const data = randomBytes(3 * partSize);
      const id = await created(store, data.length);
      // The lock handed to a newer request ends the body cleanly, short of what it declared.
      const cut = partSize + 2 * MiB;
      expect(await patch(store, id, bodyOf(data.subarray(0, cut)), data.length)).toBe(cut);
      expect((await makeStore().store.getUpload(id)).offset).toBe(cut);
      const rest = data.subarray(cut);
      expect(await patch(store, id, bodyOf(rest), rest.length)).toBe(data.length);
      expect(sha256(await stored(id))).toBe(sha256(data));
    });

    it(`a body that drops fails the write and keeps what came (${copy}; a part of its own when that is 5 MiB or more)`, async () => {
      const { store, commands } = makeStore({ size: 8 * MiB, buffer });
      const data = randomBytes(20 * MiB);
      const id = await created(store, data.length);
      const dropped = Object.assign(new Error('The request was aborted'), { name: 'AbortError' });
      const cut = 8 * MiB + 6 * MiB;
      commands.length = 0;
      await expect(patch(store, id, bodyOf(data, { failAfter: cut, fail: dropped }), data.length)).rejects.toBe(dropped);
      expect(commands.filter((c) => c.startsWith('UploadPart'))).toEqual(['UploadPart (stream)', 'UploadPart (stream)', `UploadPart (${sentFrom})`]);
      expect((await makeStore().store.getUpload(id)).offset).toBe(cut);
      const rest = data.subarray(cut);
      expect(await patch(store, id, bodyOf(rest), rest.length)).toBe(data.length);
      expect(sha256(await stored(id))).toBe(sha256(data));
    });

    it(`a body that pauses mid-part: the part goes on from its copy (${copy}), nothing is lost or left`, async () => {
      const { store, commands } = makeStore({ streamIdleMs: 300, buffer });
      const data = randomBytes(2 * partSize);
      const id = await created(store, data.length);
      process.env.TMPDIR = await fs.mkdtemp(path.join(os.tmpdir(), 'parts-'));
      const body = Readable.from(
        (async function* () {
          for (let i = 0; i < data.length; i += 64 * 1024) {
            if (i === 2 * MiB) await new Promise((r) => setTimeout(r, 1200));
            yield data.subarray(i, i + 64 * 1024);
          }
        })(),
        { objectMode: false },
      );
      commands.length = 0;
      expect(await patch(store, id, body, data.length)).toBe(data.length);
      expect(commands.filter((c) => c.startsWith('UploadPart'))).toEqual(['UploadPart (stream)', `UploadPart (${sentFrom})`, 'UploadPart (stream)']);
      expect(sha256(await stored(id))).toBe(sha256(data));
      expect(await fs.readdir(process.env.TMPDIR)).toEqual([]);
    });
  }

  it('parts beyond the streams allowed at once go through their copies; every file whole', async () => {
    const { store, commands } = makeStore({ maxStreams: 1, buffer: 0 });
    const files = [randomBytes(partSize), randomBytes(partSize)];
    const ids = await Promise.all(files.map((data) => created(store, data.length)));
    commands.length = 0;
    // The first holds the only stream while it trickles; the second arrives meanwhile.
    const slow = Readable.from(
      (async function* () {
        for (let i = 0; i < partSize; i += 256 * 1024) {
          await new Promise((r) => setTimeout(r, 20));
          yield files[0]!.subarray(i, i + 256 * 1024);
        }
      })(),
      { objectMode: false },
    );
    const first = patch(store, ids[0]!, slow, partSize);
    await new Promise((r) => setTimeout(r, 100));
    expect(await patch(store, ids[1]!, bodyOf(files[1]!), partSize)).toBe(partSize);
    expect(await first).toBe(partSize);
    expect(commands.filter((c) => c.startsWith('UploadPart')).sort()).toEqual(['UploadPart (file)', 'UploadPart (stream)']);
    for (const [i, data] of files.entries()) expect(sha256(await stored(ids[i]!))).toBe(sha256(data));
  });

  it('a deferred length: whole parts streamed, the rest kept until the length is declared', async () => {
    const { store } = makeStore();
    const data = randomBytes(2 * partSize + 2 * MiB);
    const id = await created(store, undefined);
    expect(await patch(store, id, bodyOf(data.subarray(0, 2 * partSize + MiB)), 2 * partSize + MiB)).toBe(2 * partSize + MiB);
    // Declared by another instance: this store's cached info must not hide it.
    await makeStore().store.declareUploadLength(id, data.length);
    const rest = data.subarray(2 * partSize + MiB);
    expect(await patch(store, id, bodyOf(rest), rest.length)).toBe(data.length);
    expect(sha256(await stored(id))).toBe(sha256(data));
  });

  it('without a request scope (a request the server makes) it writes as @tus/s3-store does', async () => {
    const { store } = makeStore();
    const data = randomBytes(partSize + MiB);
    const id = await created(store, data.length);
    expect(await store.write(bodyOf(data), id, 0)).toBe(data.length);
    expect(sha256(await stored(id))).toBe(sha256(data));
  });

  it('settings: S3_STREAM_IDLE at least 1s, S3_STREAM_BUFFER may be 0 (always temp files)', () => {
    expect(loadConfig({ S3_BUCKET: 'b', S3_STREAM_IDLE: '2s', S3_STREAM_BUFFER: '0' }).s3).toMatchObject({ streamIdleMs: 2000, streamBufferBytes: 0 });
    expect(loadConfig({ S3_BUCKET: 'b' }).s3).toMatchObject({ streamIdleMs: 10_000, streamBufferBytes: 64 * MiB });
    expect(() => loadConfig({ S3_BUCKET: 'b', S3_STREAM_IDLE: '0' })).toThrow(/S3_STREAM_IDLE: must be at least 1s/);
    expect(() => loadConfig({ S3_BUCKET: 'b', S3_STREAM_BUFFER: 'lots' })).toThrow(/S3_STREAM_BUFFER: "lots"/);
  });

  it('asks S3 only what the request does not know', async () => {
    const { store, commands } = makeStore();
    const data = randomBytes(2 * partSize + MiB);
    // A creation-with-upload POST: create, then write the body, then the Upload-Expires lookup.
    const id = `up-${randomBytes(8).toString('hex')}`;
    await runStoreRequest(partSize, async () => {
      await store.create(new Upload({ id, size: data.length, offset: 0 }));
      expect(await store.write(bodyOf(data.subarray(0, partSize)), id, 0)).toBe(partSize);
      expect((await store.getUpload(id)).offset).toBe(partSize);
    });
    expect(commands.splice(0)).toEqual(['CreateMultipartUpload', 'PutObject', 'UploadPart (stream)']);
    // A PATCH of the rest: one listing under the lock, the parts, the completion.
    const rest = data.subarray(partSize);
    await runStoreRequest(rest.length, async () => {
      await store.getUpload(id);
      expect(await store.write(bodyOf(rest), id, partSize)).toBe(data.length);
    });
    expect(commands).toEqual(['ListParts', 'HeadObject', 'UploadPart (stream)', 'UploadPart (stream)', 'CompleteMultipartUpload']);
    expect(sha256(await stored(id))).toBe(sha256(data));
    const left = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: id }));
    expect(left.Contents?.map((o) => o.Key).sort()).toEqual([id, `${id}.info`]);
  });
});
