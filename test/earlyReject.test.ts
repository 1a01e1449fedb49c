import diagnostics from 'node:diagnostics_channel';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { Socket } from 'node:net';
import path from 'node:path';
import { ListMultipartUploadsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import sharp from 'sharp';
import * as tus from 'tus-js-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../server/main/start.ts';
import { testS3ClientConfig } from './services/env.ts';
import { photoPixels } from './support/imageSamples.ts';
import { png, sha256 } from './support/samples.ts';
import { createTestEnvironment, setups, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { bearer, mintToken, testAuthSecret } from './support/tokens.ts';
import { fetchStatus, tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';

/**
 * Early rejection: an upload's first bytes are checked against what it was declared as before
 * the store sees them, so a disguised file is answered 415 in its first chunk.
 */

const MiB = 1024 * 1024;
const OCTETS = 'application/offset+octet-stream';

function metadata(fields: Record<string, string>): string {
  return Object.entries(fields)
    .map(([key, value]) => `${key} ${Buffer.from(value).toString('base64')}`)
    .join(',');
}

/** The first bytes of a 64-bit little-endian Linux executable, then nothing in particular. */
function elfHeader(): Buffer {
  const header = Buffer.alloc(64);
  header.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]);
  header.writeUInt16LE(2, 16); // ET_EXEC
  header.writeUInt16LE(0x3e, 18); // x86-64
  return header;
}

/** `total` bytes of an ELF file in 64 KiB chunks, made as they are read (never all in memory). */
function* elfChunks(total: number): Generator<Buffer> {
  const zeros = Buffer.alloc(64 * 1024);
  const first = Buffer.concat([elfHeader(), zeros.subarray(64)]);
  for (let sent = 0; sent < total; sent += zeros.length) {
    const chunk = sent === 0 ? first : zeros;
    yield chunk.subarray(0, Math.min(chunk.length, total - sent));
  }
}

interface StreamedAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** Body bytes the client had handed to the socket when the response arrived. */
  sentWhenAnswered: number;
}

/**
 * A request whose body is written as fast as the server takes it (honouring backpressure), as a
 * client streaming a big file does; it stops writing once the response arrives.
 */
function streamingRequest(url: string, method: string, headers: Record<string, string>, chunks: Iterator<Buffer>): Promise<StreamedAnswer> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let answered = false;
    const req = http.request(url, { method, headers });
    const write = () => {
      for (let next = chunks.next(); !answered; next = chunks.next()) {
        if (next.done) return void req.end();
        sent += next.value.length;
        if (!req.write(next.value)) return void req.once('drain', write);
      }
    };
    req.on('response', (res) => {
      answered = true;
      const sentWhenAnswered = sent;
      const body: Buffer[] = [];
      res.on('data', (chunk: Buffer) => body.push(chunk));
      res.on('end', () => {
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(body).toString(), sentWhenAnswered });
        req.destroy();
      });
    });
    // After the answer, a write into the closing socket may fail: that is the client's own doing.
    req.on('error', (error) => {
      if (!answered) reject(error);
    });
    write();
  });
}

/** A real JPEG, larger than file-type's sample so its head spans several small PATCHes. */
async function jpeg(): Promise<Buffer> {
  return sharp(photoPixels(320, 240), { raw: { width: 320, height: 240, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

describe.each(setups)('early rejection from the first bytes (%s)', (setup) => {
  let environment: TestEnvironment;
  let server: RunningServer;
  let s3: S3Client | undefined;
  let owners = 0;

  beforeAll(async () => {
    environment = await createTestEnvironment(setup, { AUTH_SECRET: testAuthSecret });
    server = await startTestServer(environment, { RATE_LIMIT_UPLOADS: '0' });
    if (setup === 'scaleout') s3 = new S3Client(testS3ClientConfig());
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
    s3?.destroy();
  });

  /** A fresh owner per test, so "lists nothing" means nothing of this test. */
  async function newOwner(): Promise<Record<string, string>> {
    return bearer(await mintToken(`early-${setup}-${++owners}`));
  }

  /** Every key the store holds: files of the data dir, or objects and open multipart uploads of the bucket. */
  async function storedKeys(): Promise<string[]> {
    if (!s3) return fs.readdir(path.join(environment.dataDir, 'uploads')).catch(() => []);
    const Bucket = environment.env.S3_BUCKET!;
    const objects = (await s3.send(new ListObjectsV2Command({ Bucket }))).Contents ?? [];
    const multiparts = (await s3.send(new ListMultipartUploadsCommand({ Bucket }))).Uploads ?? [];
    return [...objects.map((o) => o.Key!), ...multiparts.map((u) => `${u.Key!} (multipart)`)];
  }
  const keysOf = async (id: string) => (await storedKeys()).filter((key) => key.startsWith(id));

  async function create(auth: Record<string, string>, length: number, fields: Record<string, string>): Promise<{ url: string; id: string }> {
    const res = await fetch(`${server.url}/files/`, {
      method: 'POST',
      headers: { ...auth, 'Tus-Resumable': '1.0.0', 'Upload-Length': String(length), 'Upload-Metadata': metadata(fields) },
    });
    expect(res.status).toBe(201);
    const url = res.headers.get('location')!;
    return { url, id: uploadIdOf(url) };
  }

  const patch = (auth: Record<string, string>, url: string, offset: number, body: Buffer) =>
    fetch(url, { method: 'PATCH', headers: { ...auth, 'Tus-Resumable': '1.0.0', 'Content-Type': OCTETS, 'Upload-Offset': String(offset) }, body: new Uint8Array(body) });

  const listed = async (auth: Record<string, string>) => ((await (await fetch(`${server.url}/api/uploads`, { headers: auth })).json()) as { items: unknown[] }).items;

  it('answers a 200 MiB ELF declared as video/mp4 with 415 within its first MiB, and keeps nothing of it', async () => {
    const auth = await newOwner();
    const total = 200 * MiB;
    const { url, id } = await create(auth, total, { filename: 'x.mp4', filetype: 'video/mp4' });
    const headers = { ...auth, 'Tus-Resumable': '1.0.0', 'Content-Type': OCTETS, 'Upload-Offset': '0', 'Content-Length': String(total) };
    // What the server had read off the socket when it answered (published before Node closes it).
    let readWhenAnswered = Infinity;
    const onFinish = (message: unknown) => {
      const { request, socket } = message as { request: http.IncomingMessage; socket: Socket };
      if (request.method === 'PATCH' && url.endsWith(request.url!)) readWhenAnswered = socket.bytesRead;
    };
    diagnostics.subscribe('http.server.response.finish', onFinish);
    const answer = await streamingRequest(url, 'PATCH', headers, elfChunks(total)).finally(() =>
      diagnostics.unsubscribe('http.server.response.finish', onFinish),
    );

    expect(answer.status).toBe(415);
    expect(readWhenAnswered).toBeLessThanOrEqual(MiB);
    // The client's count also holds what its kernel took without the server reading it: on
    // loopback (64 KiB segments) the send buffer grows to tcp_wmem's maximum, 4 MiB by default.
    expect(answer.sentWhenAnswered).toBeLessThanOrEqual(MiB + 4 * MiB);
    expect(answer.headers.connection).toBe('close');
    expect(answer.headers['tus-resumable']).toBe('1.0.0');
    expect(answer.body).toContain('application/x-elf');
    expect(answer.body).toContain('video/mp4');

    const status = await fetchStatus(server.url, id, auth);
    expect(status).toMatchObject({ status: 'rejected', detectedType: 'application/x-elf' });
    expect(status.reason).toMatch(/first bytes are application\/x-elf .*declared video\/mp4/);
    expect(await keysOf(id)).toEqual([]);
    // Resuming it is pointless, and the client is told so.
    const head = await fetch(url, { method: 'HEAD', headers: { ...auth, 'Tus-Resumable': '1.0.0' } });
    expect(head.status).toBe(410);
  });

  it('refuses a disguised creation-with-upload POST before anything is created', async () => {
    const auth = await newOwner();
    const before = await storedKeys();
    const body = Buffer.concat([elfHeader(), Buffer.alloc(8 * 1024)]);
    const res = await fetch(`${server.url}/files/`, {
      method: 'POST',
      headers: {
        ...auth,
        'Tus-Resumable': '1.0.0',
        'Upload-Length': String(body.length),
        'Upload-Metadata': metadata({ filename: 'photo.jpg', filetype: 'image/jpeg' }),
        'Content-Type': OCTETS,
      },
      body: new Uint8Array(body),
    });
    expect(res.status).toBe(415);
    expect(res.headers.get('location')).toBeNull();
    expect(await res.text()).toMatch(/application\/x-elf .*declared image\/jpeg/);
    expect(await listed(auth)).toEqual([]);
    expect(await storedKeys()).toEqual(before);
  });

  it('keeps a first PATCH too short to judge, and refuses the one that completes the head, reading the stored part back', async () => {
    const auth = await newOwner();
    const data = png(640, 480);
    const { url, id } = await create(auth, data.length, { filename: 'photo.jpg', filetype: 'image/jpeg' });
    const first = await patch(auth, url, 0, data.subarray(0, 100));
    expect(first.status).toBe(204);
    expect(first.headers.get('upload-offset')).toBe('100');
    expect((await fetchStatus(server.url, id, auth)).status).toBe('uploading');

    // The rest alone does not start like a PNG: the verdict needs the 100 bytes in the store.
    const second = await patch(auth, url, 100, data.subarray(100));
    expect(second.status).toBe(415);
    expect(second.headers.get('connection')).toBe('close');
    expect(await second.text()).toMatch(/image\/png .*declared image\/jpeg/);
    expect(await fetchStatus(server.url, id, auth)).toMatchObject({ status: 'rejected', detectedType: 'image/png' });
    expect(await keysOf(id)).toEqual([]);
  });

  it('lets a real JPEG through whose head spans several PATCHes, to ready', async () => {
    const auth = await newOwner();
    const data = await jpeg();
    expect(data.length).toBeGreaterThan(5 * 1000);
    const { url } = await tusUpload(server.url, data, { filename: 'photo.jpg', filetype: 'image/jpeg', chunkSize: 1000, headers: auth });
    expect(await waitUntilSettled(server.url, uploadIdOf(url), 30_000, auth)).toMatchObject({ status: 'ready', detectedType: 'image/jpeg', sha256: sha256(data) });
  });

  it('gives tus-js-client a 415 it does not retry', async () => {
    const auth = await newOwner();
    const data = Buffer.concat([elfHeader(), Buffer.alloc(256 * 1024)]);
    const requests: string[] = [];
    const error = await new Promise<tus.DetailedError>((resolve, reject) => {
      const upload = new tus.Upload(data, {
        endpoint: `${server.url}/files/`,
        metadata: { filename: 'clip.mp4', filetype: 'video/mp4' },
        headers: auth,
        retryDelays: [0, 100],
        onBeforeRequest: (req) => void requests.push(req.getMethod()),
        onSuccess: () => reject(new Error('the disguised upload succeeded')),
        onError: (err) => resolve(err as tus.DetailedError),
      });
      upload.start();
    });
    expect(error.originalResponse?.getStatus()).toBe(415);
    expect(error.originalResponse?.getBody()).toContain('application/x-elf');
    expect(requests).toEqual(['POST', 'PATCH']);
    const id = uploadIdOf(error.originalRequest!.getURL());
    expect(await fetchStatus(server.url, id, auth)).toMatchObject({ status: 'rejected' });
  });

  it('refuses Upload-Length: 0 at creation with a 400 that says why', async () => {
    const auth = await newOwner();
    const res = await fetch(`${server.url}/files/`, {
      method: 'POST',
      headers: { ...auth, 'Tus-Resumable': '1.0.0', 'Upload-Length': '0', 'Upload-Metadata': metadata({ filename: 'photo.jpg', filetype: 'image/jpeg' }) },
    });
    expect(res.status).toBe(400);
    expect(await res.text()).toMatch(/empty/);
    expect(await listed(auth)).toEqual([]);
  });
});
