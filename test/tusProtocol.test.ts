import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanUpExpired } from '../server/jobs/cleanup.ts';
import type { RunningServer } from '../server/main/start.ts';
import { png, sha256 } from './support/samples.ts';
import { createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { fetchStatus, waitUntilSettled } from './support/uploads.ts';

/**
 * The tus 1.0 protocol (core, creation, creation-with-upload, creation-defer-length,
 * termination, expiration) checked with raw HTTP requests: nothing here forgives a
 * missing header the way a tus client would.
 */

const V = '1.0.0';
const MiB = 1024 * 1024;
const OCTETS = 'application/offset+octet-stream';
const RFC7231_DATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/** `Upload-Metadata` from plain values: each value base64, pairs joined by commas. */
function metadata(fields: Record<string, string>): string {
  return Object.entries(fields)
    .map(([key, value]) => `${key} ${Buffer.from(value, 'utf8').toString('base64')}`)
    .join(',');
}

/** Requests against one running server; every tus request carries `Tus-Resumable: 1.0.0` unless told. */
function client(base: () => string) {
  const url = (target: string) => (target.startsWith('http') ? target : `${base()}${target}`);
  const request = (method: string, target: string, headers: Record<string, string> = {}, body?: Buffer) =>
    fetch(url(target), { method, headers: { 'Tus-Resumable': V, ...headers }, body: body && new Uint8Array(body) });
  return {
    request,
    head: (target: string, headers: Record<string, string> = {}) => request('HEAD', target, headers),
    patch: (target: string, offset: number, body: Buffer, headers: Record<string, string> = {}) =>
      request('PATCH', target, { 'Content-Type': OCTETS, 'Upload-Offset': String(offset), ...headers }, body),
    del: (target: string, headers: Record<string, string> = {}) => request('DELETE', target, headers),
    /** POST /files/ for a new upload; resolves with the response and the upload's URL and id. */
    async create(headers: Record<string, string>, body?: Buffer) {
      const res = await request('POST', '/files/', headers, body);
      const location = res.headers.get('location') ?? '';
      return { res, url: location, id: location.split('/').pop()! };
    },
  };
}

/** A tus response that only has to say which protocol it speaks. */
function expectTusHeaders(res: Response) {
  expect(res.headers.get('tus-resumable')).toBe(V);
}

/** CORS on a tus answer: any origin may read it, and the tus headers are exposed to scripts. */
function expectCors(res: Response) {
  expect(res.headers.get('access-control-allow-origin')).toBeTruthy();
  const exposed = (res.headers.get('access-control-expose-headers') ?? '').split(',').map((h) => h.trim().toLowerCase());
  for (const header of ['upload-offset', 'upload-length', 'location', 'upload-expires', 'tus-resumable', 'tus-version']) {
    expect(exposed).toContain(header);
  }
}

async function poll<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A PATCH whose body is sent chunked (no Content-Length), so the server learns its size only by reading it. */
function chunkedPatch(url: string, offset: number, body: Buffer): Promise<{ status: number; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'PATCH',
      headers: { 'Tus-Resumable': V, 'Content-Type': OCTETS, 'Upload-Offset': String(offset), 'Transfer-Encoding': 'chunked' },
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers }));
    });
    // The server may answer and close before it has read everything we send.
    req.on('error', reject);
    for (let i = 0; i < body.length; i += 16 * 1024) req.write(body.subarray(i, i + 16 * 1024));
    req.end();
  });
}

describe('tus 1.0 over raw HTTP (embedded)', () => {
  let environment: TestEnvironment;
  let server: RunningServer;
  const tus = client(() => server.url);
  const pngMeta = (filename = 'photo.png') => metadata({ filename, filetype: 'image/png' });

  beforeAll(async () => {
    environment = await createTestEnvironment('embedded');
    // Many uploads are created here: no rate limit.
    server = await startTestServer(environment, { RATE_LIMIT_UPLOADS: '0' });
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
  });

  describe('OPTIONS', () => {
    it('describes the server without needing Tus-Resumable', async () => {
      const res = await fetch(`${server.url}/files/`, { method: 'OPTIONS' });
      expect([200, 204]).toContain(res.status);
      expect(res.headers.get('tus-resumable')).toBe(V);
      expect(res.headers.get('tus-version')).toBe(V);
      expect(res.headers.get('tus-extension')!.split(',').sort()).toEqual(
        ['checksum', 'concatenation', 'creation', 'creation-defer-length', 'creation-with-upload', 'expiration', 'termination'],
      );
      expect(res.headers.get('tus-max-size')).toBe(String(server.services.context.config.maxUploadSize));
    });

    it('ignores a Tus-Resumable it does not support', async () => {
      const res = await fetch(`${server.url}/files/`, { method: 'OPTIONS', headers: { 'Tus-Resumable': '0.2.2' } });
      expect([200, 204]).toContain(res.status);
      expect(res.headers.get('tus-version')).toBe(V);
    });

    it('answers a CORS preflight for the tus headers and methods', async () => {
      const res = await fetch(`${server.url}/files/`, {
        method: 'OPTIONS',
        headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'PATCH', 'Access-Control-Request-Headers': 'upload-offset,tus-resumable' },
      });
      expect([200, 204]).toContain(res.status);
      expect(res.headers.get('access-control-allow-origin')).toBeTruthy();
      expect(res.headers.get('access-control-allow-methods')).toMatch(/PATCH/);
      const allowed = res.headers.get('access-control-allow-headers')!.toLowerCase();
      for (const header of ['tus-resumable', 'upload-offset', 'upload-length', 'upload-metadata', 'upload-defer-length', 'x-http-method-override']) {
        expect(allowed).toContain(header);
      }
    });
  });

  describe('Tus-Resumable', () => {
    it('is required: 412 with Tus-Version when missing', async () => {
      for (const method of ['POST', 'HEAD', 'PATCH', 'DELETE']) {
        const res = await fetch(`${server.url}/files/${method === 'POST' ? '' : 'someid'}`, { method, headers: { 'Upload-Length': '10' } });
        expect(res.status, method).toBe(412);
        expectTusHeaders(res);
        expect(res.headers.get('tus-version')).toBe(V);
      }
    });

    it('an unsupported version gets 412 with Tus-Version, and the request is not processed', async () => {
      const before = await fs.readdir(path.join(environment.dataDir, 'uploads'));
      const res = await tus.request('POST', '/files/', { 'Tus-Resumable': '0.2.2', 'Upload-Length': '10', 'Upload-Metadata': pngMeta() });
      expect(res.status).toBe(412);
      expectTusHeaders(res);
      expect(res.headers.get('tus-version')).toBe(V);
      expect(res.headers.get('location')).toBeNull();
      expect(await res.text()).toContain('0.2.2');
      expect(await fs.readdir(path.join(environment.dataDir, 'uploads'))).toEqual(before);

      // Nor is a PATCH applied.
      const { url } = await tus.create({ 'Upload-Length': '10', 'Upload-Metadata': pngMeta() });
      const patch = await tus.patch(url, 0, Buffer.from('hello'), { 'Tus-Resumable': '0.2.2' });
      expect(patch.status).toBe(412);
      expect((await tus.head(url)).headers.get('upload-offset')).toBe('0');
    });
  });

  describe('creation (POST)', () => {
    it('creates an upload: 201, absolute Location under /files/, Upload-Expires', async () => {
      const { res, url } = await tus.create({ 'Upload-Length': '100', 'Upload-Metadata': pngMeta() });
      expect(res.status).toBe(201);
      expectTusHeaders(res);
      expect(url).toMatch(new RegExp(`^${server.url}/files/[A-Za-z0-9_-]+$`));
      expect(res.headers.get('upload-expires')).toMatch(RFC7231_DATE);
      const expires = Date.parse(res.headers.get('upload-expires')!);
      expect(expires).toBeGreaterThan(Date.now() + 23 * 3600_000);
      expect(expires).toBeLessThan(Date.now() + 25 * 3600_000);
      const head = await tus.head(url);
      expect(head.status).toBe(200);
      expect(head.headers.get('upload-offset')).toBe('0');
    });

    it('needs exactly one of Upload-Length and Upload-Defer-Length: 1', async () => {
      const cases: Record<string, string>[] = [
        { 'Upload-Length': '10', 'Upload-Defer-Length': '1' },
        { 'Upload-Defer-Length': '2' },
        { 'Upload-Defer-Length': 'yes' },
        {},
        { 'Upload-Length': '-1' },
        { 'Upload-Length': 'ten' },
        { 'Upload-Length': '1.5' },
      ];
      for (const headers of cases) {
        const { res } = await tus.create({ ...headers, 'Upload-Metadata': pngMeta() });
        expect(res.status, JSON.stringify(headers)).toBe(400);
        expectTusHeaders(res);
        expect(res.headers.get('location')).toBeNull();
      }
    });

    it('refuses malformed Upload-Metadata with 400', async () => {
      const bad = [
        'filename not*base64',
        'filename abc', // length not a multiple of 4
        'file name dGVzdC5wbmc=', // key with a space
        `filename ${Buffer.from('a.png').toString('base64')},filename ${Buffer.from('b.png').toString('base64')}`, // duplicate key
        `filename ${Buffer.from('a.png').toString('base64')}, ${Buffer.from('b').toString('base64')}`, // empty key
        'filename\u00e9 dGVzdA==', // non-ASCII key
      ];
      for (const value of bad) {
        const { res } = await tus.create({ 'Upload-Length': '10', 'Upload-Metadata': value });
        expect(res.status, value).toBe(400);
        expectTusHeaders(res);
      }
    });

    it('accepts metadata keys without a value', async () => {
      const { res, url } = await tus.create({ 'Upload-Length': '10', 'Upload-Metadata': `${pngMeta()},is_confidential` });
      expect(res.status).toBe(201);
      const head = await tus.head(url);
      expect(head.headers.get('upload-metadata')).toContain('is_confidential');
    });

    it('refuses an Upload-Length over Tus-Max-Size with 413', async () => {
      const max = server.services.context.config.maxUploadSize;
      const { res } = await tus.create({ 'Upload-Length': String(max + 1), 'Upload-Metadata': metadata({ filename: 'movie.mp4' }) });
      expect(res.status).toBe(413);
      expectTusHeaders(res);
      expect(res.headers.get('location')).toBeNull();
    });

    it('refuses what our type policy does not allow, saying why', async () => {
      const exe = await tus.create({ 'Upload-Length': '10', 'Upload-Metadata': metadata({ filename: 'setup.png', filetype: 'application/x-msdownload' }) });
      expect(exe.res.status).toBe(415);
      expectTusHeaders(exe.res);
      expect(await exe.res.text()).toMatch(/application\/x-msdownload is not allowed/);

      const tooBig = await tus.create({ 'Upload-Length': String(20 * MiB + 1), 'Upload-Metadata': pngMeta() });
      expect(tooBig.res.status).toBe(413);
      expectTusHeaders(tooBig.res);
      expect(await tooBig.res.text()).toMatch(/over the 20971520-byte limit for image\/png/);

      const evil = await tus.create({ 'Upload-Length': '10', 'Upload-Metadata': metadata({ filename: 'evil.exe' }) });
      expect(evil.res.status).toBe(415);
      expect(await evil.res.text()).toMatch(/extension \.exe is not allowed/);

      for (const { res } of [exe, tooBig, evil]) expect(res.headers.get('location')).toBeNull();
    });

    it('records the upload as uploading with a sanitised filename', async () => {
      const { res, id } = await tus.create({ 'Upload-Length': '300', 'Upload-Metadata': pngMeta('../../etc/pa\u0000sswd.png') });
      expect(res.status).toBe(201);
      const status = await fetchStatus(server.url, id);
      expect(status).toMatchObject({ status: 'uploading', size: 300, offset: 0, claimedType: 'image/png' });
      expect(status.filename).not.toMatch(/[/\\\u0000]/);
      expect(status.filename).toMatch(/^pa.sswd\.png$/u);
      expect(status.links.upload).toMatch(new RegExp(`/files/${id}$`));
    });
  });

  describe('creation-with-upload', () => {
    it('stores the body of the POST: 201 with Upload-Offset', async () => {
      const body = Buffer.from('hello');
      const { res, url } = await tus.create({ 'Upload-Length': '100', 'Upload-Metadata': pngMeta(), 'Content-Type': OCTETS }, body);
      expect(res.status).toBe(201);
      expectTusHeaders(res);
      expect(res.headers.get('upload-offset')).toBe(String(body.length));
      expect(res.headers.get('upload-expires')).toMatch(RFC7231_DATE);
      expect((await tus.head(url)).headers.get('upload-offset')).toBe('5');
    });

    it('refuses a body longer than Upload-Length', async () => {
      const { res } = await tus.create({ 'Upload-Length': '3', 'Upload-Metadata': pngMeta(), 'Content-Type': OCTETS }, Buffer.from('hello'));
      expect(res.status).toBe(413);
      expectTusHeaders(res);
    });

    it('a POST carrying the whole file finishes the upload', async () => {
      const data = png();
      const { res, id } = await tus.create({ 'Upload-Length': String(data.length), 'Upload-Metadata': pngMeta(), 'Content-Type': OCTETS }, data);
      expect(res.status).toBe(201);
      expect(res.headers.get('upload-offset')).toBe(String(data.length));
      // A finished upload does not expire.
      expect(res.headers.get('upload-expires')).toBeNull();
      expect(await waitUntilSettled(server.url, id)).toMatchObject({ status: 'ready', sha256: sha256(data) });
    });
  });

  describe('HEAD', () => {
    it('reports offset, length, metadata and expiry, never cacheable', async () => {
      const meta = pngMeta();
      const { url } = await tus.create({ 'Upload-Length': '100', 'Upload-Metadata': meta });
      await tus.patch(url, 0, Buffer.alloc(40, 1));
      const res = await tus.head(url);
      expect(res.status).toBe(200);
      expectTusHeaders(res);
      expect(res.headers.get('upload-offset')).toBe('40');
      expect(res.headers.get('upload-length')).toBe('100');
      expect(res.headers.get('upload-defer-length')).toBeNull();
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.headers.get('upload-metadata')).toBe(meta);
      expect(res.headers.get('upload-expires')).toMatch(RFC7231_DATE);
    });

    it('answers 404 with Tus-Resumable and no Upload-Offset for an unknown upload', async () => {
      const res = await tus.head('/files/0123456789abcdef0123456789abcdef');
      expect(res.status).toBe(404);
      expectTusHeaders(res);
      expect(res.headers.get('upload-offset')).toBeNull();
    });

    it('says Upload-Defer-Length: 1 and no Upload-Length while the length is deferred', async () => {
      const { res: created, url } = await tus.create({ 'Upload-Defer-Length': '1', 'Upload-Metadata': pngMeta() });
      expect(created.status).toBe(201);
      const res = await tus.head(url);
      expect(res.status).toBe(200);
      expect(res.headers.get('upload-defer-length')).toBe('1');
      expect(res.headers.get('upload-length')).toBeNull();
      expect(res.headers.get('upload-offset')).toBe('0');
    });
  });

  describe('PATCH', () => {
    it('appends at the offset: 204 with the new Upload-Offset and Upload-Expires', async () => {
      const { url } = await tus.create({ 'Upload-Length': '10', 'Upload-Metadata': pngMeta() });
      const first = await tus.patch(url, 0, Buffer.from('hello'));
      expect(first.status).toBe(204);
      expectTusHeaders(first);
      expect(first.headers.get('upload-offset')).toBe('5');
      expect(first.headers.get('upload-expires')).toMatch(RFC7231_DATE);
      const second = await tus.patch(url, 5, Buffer.from('world'));
      expect(second.status).toBe(204);
      expect(second.headers.get('upload-offset')).toBe('10');
    });

    it('refuses a wrong Upload-Offset with 409 and leaves the upload alone', async () => {
      const { url } = await tus.create({ 'Upload-Length': '10', 'Upload-Metadata': pngMeta() });
      await tus.patch(url, 0, Buffer.from('abc'));
      for (const offset of [0, 2, 4, 10]) {
        const res = await tus.patch(url, offset, Buffer.from('xyz'));
        expect(res.status, `offset ${offset}`).toBe(409);
        expectTusHeaders(res);
      }
      const head = await tus.head(url);
      expect(head.headers.get('upload-offset')).toBe('3');
    });

    it('needs Upload-Offset: 400 when missing or malformed', async () => {
      const { url } = await tus.create({ 'Upload-Length': '10', 'Upload-Metadata': pngMeta() });
      const missing = await tus.request('PATCH', url, { 'Content-Type': OCTETS }, Buffer.from('abc'));
      expect(missing.status).toBe(400);
      expectTusHeaders(missing);
      for (const offset of ['-1', 'abc', '1.0', '']) {
        const res = await tus.request('PATCH', url, { 'Content-Type': OCTETS, 'Upload-Offset': offset }, Buffer.from('abc'));
        expect(res.status, `offset "${offset}"`).toBe(400);
        expectTusHeaders(res);
      }
      expect((await tus.head(url)).headers.get('upload-offset')).toBe('0');
    });

    it('needs Content-Type: application/offset+octet-stream, else 415', async () => {
      const { url } = await tus.create({ 'Upload-Length': '10', 'Upload-Metadata': pngMeta() });
      const wrong = await tus.patch(url, 0, Buffer.from('abc'), { 'Content-Type': 'application/octet-stream' });
      expect(wrong.status).toBe(415);
      expectTusHeaders(wrong);
      expect(await wrong.text()).toContain('application/offset+octet-stream');
      const missing = await tus.request('PATCH', url, { 'Upload-Offset': '0' });
      expect(missing.status).toBe(415);
      expectTusHeaders(missing);
      const withParameter = await tus.patch(url, 0, Buffer.from('abc'), { 'Content-Type': `${OCTETS}; charset=binary` });
      expect(withParameter.status).toBe(204);
      expect((await tus.head(url)).headers.get('upload-offset')).toBe('3');
    });

    it('answers 404 for an unknown upload', async () => {
      const res = await tus.patch('/files/0123456789abcdef0123456789abcdef', 0, Buffer.from('abc'));
      expect(res.status).toBe(404);
      expectTusHeaders(res);
    });

    it('never stores past Upload-Length', async () => {
      const { url } = await tus.create({ 'Upload-Length': '10', 'Upload-Metadata': pngMeta() });
      await tus.patch(url, 0, Buffer.from('12345'));
      // Content-Length says too much: refused before any byte is read.
      const declared = await tus.patch(url, 5, Buffer.from('6789abcdef'));
      expect(declared.status).toBe(413);
      expectTusHeaders(declared);
      expect((await tus.head(url)).headers.get('upload-offset')).toBe('5');
      // Chunked, so the server only notices while reading.
      const chunked = await chunkedPatch(url, 5, Buffer.alloc(256 * 1024, 7)).catch(() => undefined);
      if (chunked) expect(chunked.status).toBe(413);
      const head = await tus.head(url);
      expect(Number(head.headers.get('upload-offset'))).toBeLessThanOrEqual(10);
      expect(head.headers.get('upload-length')).toBe('10');
    });

    it('declares a deferred length once, in a PATCH', async () => {
      const { url } = await tus.create({ 'Upload-Defer-Length': '1', 'Upload-Metadata': pngMeta() });
      const first = await tus.patch(url, 0, Buffer.from('abcd'), { 'Upload-Length': '10' });
      expect(first.status).toBe(204);
      expect(first.headers.get('upload-offset')).toBe('4');
      const head = await tus.head(url);
      expect(head.headers.get('upload-length')).toBe('10');
      expect(head.headers.get('upload-defer-length')).toBeNull();
      const again = await tus.patch(url, 4, Buffer.from('ef'), { 'Upload-Length': '10' });
      expect(again.status).toBe(400);
      expectTusHeaders(again);
      expect((await tus.head(url)).headers.get('upload-offset')).toBe('4');
    });

    it('refuses a deferred length under the offset or over the type limit', async () => {
      const { url } = await tus.create({ 'Upload-Defer-Length': '1', 'Upload-Metadata': pngMeta() });
      await tus.patch(url, 0, Buffer.from('abcd'));
      const short = await tus.patch(url, 4, Buffer.from(''), { 'Upload-Length': '3' });
      expect(short.status).toBe(400);
      const tooBig = await tus.patch(url, 4, Buffer.from('ef'), { 'Upload-Length': String(20 * MiB + 1) });
      expect(tooBig.status).toBe(413);
      expectTusHeaders(tooBig);
      const head = await tus.head(url);
      expect(head.headers.get('upload-defer-length')).toBe('1');
      expect(head.headers.get('upload-offset')).toBe('4');
    });

    it('records progress in the upload record', async () => {
      const { url, id } = await tus.create({ 'Upload-Length': '300', 'Upload-Metadata': pngMeta() });
      await tus.patch(url, 0, Buffer.alloc(100));
      expect((await poll(() => fetchStatus(server.url, id), (s) => s.offset === 100)).offset).toBe(100);
      await tus.patch(url, 100, Buffer.alloc(50));
      expect((await poll(() => fetchStatus(server.url, id), (s) => s.offset === 150)).offset).toBe(150);
      expect((await fetchStatus(server.url, id)).status).toBe('uploading');
    });

    it('finishes the upload when the last byte arrives', async () => {
      const data = png();
      const { url, id } = await tus.create({ 'Upload-Length': String(data.length), 'Upload-Metadata': pngMeta() });
      const res = await tus.patch(url, 0, data);
      expect(res.status).toBe(204);
      expect(res.headers.get('upload-offset')).toBe(String(data.length));
      expect(res.headers.get('upload-expires')).toBeNull();
      expect(await waitUntilSettled(server.url, id)).toMatchObject({ status: 'ready', size: data.length, sha256: sha256(data) });
      const head = await tus.head(url);
      expect(head.status).toBe(200);
      expect(head.headers.get('upload-offset')).toBe(String(data.length));
      expect(head.headers.get('upload-length')).toBe(String(data.length));
      expect(head.headers.get('upload-expires')).toBeNull();
    });
  });

  describe('termination (DELETE)', () => {
    it('terminates an unfinished upload: 204, then 404 or 410', async () => {
      const { url, id } = await tus.create({ 'Upload-Length': '10', 'Upload-Metadata': pngMeta() });
      await tus.patch(url, 0, Buffer.from('abc'));
      const res = await tus.del(url);
      expect(res.status).toBe(204);
      expectTusHeaders(res);
      const head = await tus.head(url);
      expect([404, 410]).toContain(head.status);
      expectTusHeaders(head);
      expect(head.headers.get('upload-offset')).toBeNull();
      const patch = await tus.patch(url, 3, Buffer.from('def'));
      expect([404, 410]).toContain(patch.status);
      expectTusHeaders(patch);
      await expect(fs.stat(path.join(environment.dataDir, 'uploads', id))).rejects.toThrow();
      expect((await poll(() => fetchStatus(server.url, id), (s) => s.status === 'deleted')).status).toBe('deleted');
    });

    it('answers 404 for an unknown upload', async () => {
      const res = await tus.del('/files/0123456789abcdef0123456789abcdef');
      expect(res.status).toBe(404);
      expectTusHeaders(res);
    });

    it('refuses to terminate a finished upload, which stays downloadable', async () => {
      const data = png(100, 80);
      const { url, id } = await tus.create({ 'Upload-Length': String(data.length), 'Upload-Metadata': pngMeta() });
      await tus.patch(url, 0, data);
      const res = await tus.del(url);
      expect(res.status).toBe(403);
      expectTusHeaders(res);
      expect(await res.text()).toContain(`/api/uploads/${id}`);
      expect((await tus.head(url)).headers.get('upload-offset')).toBe(String(data.length));
      expect(await waitUntilSettled(server.url, id)).toMatchObject({ status: 'ready' });
      const original = await fetch(`${server.url}/api/uploads/${id}/files/original`);
      expect(original.status).toBe(200);
      expect(sha256(Buffer.from(await original.arrayBuffer()))).toBe(sha256(data));
    });
  });

  describe('X-HTTP-Method-Override', () => {
    it('turns a POST into PATCH, HEAD and DELETE', async () => {
      const { url } = await tus.create({ 'Upload-Length': '10', 'Upload-Metadata': pngMeta() });
      const patch = await tus.request('POST', url, { 'X-HTTP-Method-Override': 'PATCH', 'Content-Type': OCTETS, 'Upload-Offset': '0' }, Buffer.from('abcd'));
      expect(patch.status).toBe(204);
      expect(patch.headers.get('upload-offset')).toBe('4');
      const head = await tus.request('POST', url, { 'X-HTTP-Method-Override': 'HEAD' });
      expect(head.status).toBe(200);
      expect(head.headers.get('upload-offset')).toBe('4');
      expect(head.headers.get('upload-length')).toBe('10');
      expect(head.headers.get('cache-control')).toBe('no-store');
      const del = await tus.request('POST', url, { 'X-HTTP-Method-Override': 'DELETE' });
      expect(del.status).toBe(204);
      expect([404, 410]).toContain((await tus.head(url)).status);
    });
  });

  describe('CORS', () => {
    const origin = { Origin: 'https://app.example' };

    it('lets a browser read the tus headers of POST, HEAD and PATCH answers', async () => {
      const { res, url } = await tus.create({ ...origin, 'Upload-Length': '10', 'Upload-Metadata': pngMeta() });
      expectCors(res);
      const patch = await tus.patch(url, 0, Buffer.from('ab'), origin);
      expect(patch.status).toBe(204);
      expectCors(patch);
      const head = await tus.head(url, origin);
      expectCors(head);
      const del = await tus.del(url, origin);
      expectCors(del);
    });

    it('and of error answers: 400, 404, 409, 412, 413, 415', async () => {
      const { url } = await tus.create({ 'Upload-Length': '10', 'Upload-Metadata': pngMeta() });
      const answers = {
        400: await tus.create({ ...origin, 'Upload-Length': 'x' }).then((r) => r.res),
        404: await tus.head('/files/0123456789abcdef0123456789abcdef', origin),
        409: await tus.patch(url, 3, Buffer.from('x'), origin),
        412: await fetch(`${server.url}/files/`, { method: 'POST', headers: { ...origin, 'Upload-Length': '10' } }),
        413: await tus.create({ ...origin, 'Upload-Length': String(21 * MiB), 'Upload-Metadata': pngMeta() }).then((r) => r.res),
        415: await tus.create({ ...origin, 'Upload-Length': '10', 'Upload-Metadata': metadata({ filename: 'evil.exe' }) }).then((r) => r.res),
        '415 (PATCH Content-Type)': await tus.patch(url, 0, Buffer.from('x'), { ...origin, 'Content-Type': 'text/plain' }),
      };
      for (const [status, res] of Object.entries(answers)) {
        expect(res.status, status).toBe(Number(status.slice(0, 3)));
        expectTusHeaders(res);
        expectCors(res);
      }
      expect(answers[412].headers.get('tus-version')).toBe(V);
    });
  });
});

describe('tus expiration (embedded, uploads expire after 1 s)', () => {
  let environment: TestEnvironment;
  let server: RunningServer;
  const tus = client(() => server.url);
  const pngMeta = metadata({ filename: 'late.png', filetype: 'image/png' });

  beforeAll(async () => {
    environment = await createTestEnvironment('embedded');
    server = await startTestServer(environment, { UPLOAD_EXPIRES_AFTER: '1s', RATE_LIMIT_UPLOADS: '0' });
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
  });

  it('an unfinished upload cannot be resumed once it expired, and cleanup removes its bytes', async () => {
    const before = Date.now();
    const { res, url, id } = await tus.create({ 'Upload-Length': '10', 'Upload-Metadata': pngMeta });
    const after = Date.now();
    // UPLOAD_EXPIRES_AFTER past the creation, which came between `before` and `after` (an HTTP date drops the milliseconds).
    const expires = Date.parse(res.headers.get('upload-expires')!);
    expect(expires).toBeGreaterThan(before + 1000 - 1000);
    expect(expires).toBeLessThanOrEqual(after + 1000);
    const patch = await tus.patch(url, 0, Buffer.from('abc'));
    expect(patch.status).toBe(204);
    expect(patch.headers.get('upload-expires')).toMatch(RFC7231_DATE);
    await new Promise((r) => setTimeout(r, 1500));

    const late = await tus.patch(url, 3, Buffer.from('def'));
    expect(late.status).toBe(410);
    expectTusHeaders(late);
    const head = await tus.head(url);
    expect(head.status).toBe(410);
    expectTusHeaders(head);
    expect(head.headers.get('upload-offset')).toBeNull();

    const uploads = path.join(environment.dataDir, 'uploads');
    expect(await fs.readdir(uploads)).toContain(id);
    await cleanUpExpired(server.services.context);
    expect((await fetchStatus(server.url, id)).status).toBe('expired');
    expect((await fs.readdir(uploads)).filter((f) => f.startsWith(id))).toEqual([]);

    // The server keeps track of the expired upload, so it says Gone rather than Not Found.
    const afterCleanup = await tus.patch(url, 3, Buffer.from('def'));
    expect(afterCleanup.status).toBe(410);
    expectTusHeaders(afterCleanup);
    expect((await tus.head(url)).status).toBe(410);
  });

  it('a finished upload does not expire', async () => {
    const data = png(40, 30);
    const { url, id } = await tus.create({ 'Upload-Length': String(data.length), 'Upload-Metadata': pngMeta });
    expect((await tus.patch(url, 0, data)).status).toBe(204);
    expect(await waitUntilSettled(server.url, id)).toMatchObject({ status: 'ready' });
    await new Promise((r) => setTimeout(r, 1500));

    const head = await tus.head(url);
    expect(head.status).toBe(200);
    expect(head.headers.get('upload-offset')).toBe(String(data.length));
    expect(head.headers.get('upload-expires')).toBeNull();

    await cleanUpExpired(server.services.context);
    expect((await fetchStatus(server.url, id)).status).toBe('ready');
    const original = await fetch(`${server.url}/api/uploads/${id}/files/original`);
    expect(original.status).toBe(200);
    expect(sha256(Buffer.from(await original.arrayBuffer()))).toBe(sha256(data));
  });
});
