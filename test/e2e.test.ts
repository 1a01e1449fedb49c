import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { DetailedError } from 'tus-js-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clamdSocket } from './services/env.ts';
import { eventually } from './support/eventually.ts';
import type { RunningServer } from '../server/main/start.ts';
import { eicar, pdf, png, randomBytesOf, sha256 } from './support/samples.ts';
import { createTestEnvironment, setups, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { fetchStatus, tusUpload, uploadIdOf, waitUntilSettled, type UploadOptions } from './support/uploads.ts';

describe.each(setups)('upload pipeline (%s)', (setup) => {
  let environment: TestEnvironment;
  let server: RunningServer;

  beforeAll(async () => {
    environment = await createTestEnvironment(setup);
    server = await startTestServer(environment);
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
  });

  async function download(id: string, init?: RequestInit) {
    return fetch(`${server.url}/api/uploads/${id}/files/original`, init);
  }

  /** An upload its first bytes already condemn: tus-js-client fails with the 415; resolves with the upload's id. */
  async function refusedFromFirstBytes(data: Buffer, options: UploadOptions): Promise<string> {
    const error = await tusUpload(server.url, data, options).then(
      () => undefined,
      (err: unknown) => err as DetailedError,
    );
    expect(error?.originalResponse?.getStatus()).toBe(415);
    return uploadIdOf(error!.originalRequest!.getURL());
  }

  it('takes a PNG to ready with its sha256 and detected type, and serves it back', async () => {
    const data = png(320, 200);
    const { url } = await tusUpload(server.url, data, { filename: 'photo.png', filetype: 'image/png' });
    const status = await waitUntilSettled(server.url, uploadIdOf(url));
    expect(status).toMatchObject({ status: 'ready', reason: null, detectedType: 'image/png', sha256: sha256(data), size: data.length, scan: 'clean' });
    const res = await download(status.id);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/png');
    expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(sha256(data));
  });

  it('takes a PDF to ready', async () => {
    const data = pdf(200_000);
    const { url } = await tusUpload(server.url, data, { filename: 'report.pdf', filetype: 'application/pdf', chunkSize: 64 * 1024 });
    const status = await waitUntilSettled(server.url, uploadIdOf(url));
    expect(status).toMatchObject({ status: 'ready', detectedType: 'application/pdf', sha256: sha256(data) });
  });

  it("gives the client's own metadata back in the status JSON, without the file's name and type", async () => {
    const { url } = await tusUpload(server.url, pdf(), { filename: 'album.pdf', filetype: 'application/pdf', metadata: { albumId: 'a-7', userId: 'u 42 ✓' } });
    const status = await waitUntilSettled(server.url, uploadIdOf(url));
    expect(status.metadata).toEqual({ albumId: 'a-7', userId: 'u 42 ✓' });
    expect(status.filename).toBe('album.pdf');
    const listed = (await (await fetch(`${server.url}/api/uploads`)).json()) as { items: { id: string; metadata: unknown }[] };
    expect(listed.items.find((item) => item.id === status.id)?.metadata).toEqual({ albumId: 'a-7', userId: 'u 42 ✓' });
  });

  it('marks the EICAR test file infected and never serves it', async () => {
    const { url } = await tusUpload(server.url, eicar(), { filename: 'notes.pdf', filetype: 'application/pdf' });
    const status = await waitUntilSettled(server.url, uploadIdOf(url));
    expect(status.status).toBe('infected');
    expect(status.reason).toMatch(/ClamAV found .*eicar/i);
    expect((await download(status.id)).status).toBe(410);
  });

  it('rejects bytes that disagree with the declared type, from their first bytes', async () => {
    const id = await refusedFromFirstBytes(png(), { filename: 'invoice.pdf', filetype: 'application/pdf' });
    const status = await fetchStatus(server.url, id);
    expect(status).toMatchObject({ status: 'rejected', detectedType: 'image/png' });
    expect(status.reason).toContain('claimed application/pdf');
  });

  it('resumes an upload interrupted mid-chunk, and the stored file is whole', async () => {
    const data = pdf(3_000_000);
    const first = await tusUpload(server.url, data, { filename: 'big.pdf', filetype: 'application/pdf', chunkSize: 1024 * 1024, abortAfterBytes: 1_500_000 });
    expect(first.aborted).toBe(true);
    const id = uploadIdOf(first.url);
    const head = await fetch(first.url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
    const offset = Number(head.headers.get('upload-offset'));
    expect(offset).toBeGreaterThan(0);
    expect(offset).toBeLessThan(data.length);
    expect((await fetchStatus(server.url, id)).status).toBe('uploading');

    await tusUpload(server.url, data, { filename: 'big.pdf', filetype: 'application/pdf', chunkSize: 1024 * 1024, uploadUrl: first.url });
    const status = await waitUntilSettled(server.url, id);
    expect(status).toMatchObject({ status: 'ready', sha256: sha256(data), size: data.length });
    const res = await download(id);
    expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(sha256(data));
  });

  it('rejects bytes whose extension disagrees with them, even with no declared type', async () => {
    const id = await refusedFromFirstBytes(png(), { filename: 'holiday.jpg' });
    const status = await fetchStatus(server.url, id);
    expect(status).toMatchObject({ status: 'rejected', detectedType: 'image/png' });
    expect(status.reason).toContain('.jpg');
  });

  it('rejects content nothing recognises, and a type over its own size limit', async () => {
    const unknown = await tusUpload(server.url, randomBytesOf(50_000), { filename: 'blob' });
    const unknownStatus = await waitUntilSettled(server.url, uploadIdOf(unknown.url));
    expect(unknownStatus).toMatchObject({ status: 'rejected', detectedType: null });
    expect(unknownStatus.reason).toContain('could not be recognised');

    // Declared as nothing in particular, so only the global limit applied at creation; the first
    // bytes say PNG, whose limit is 20 MiB.
    const bigPng = Buffer.concat([png(), Buffer.alloc(21 * 1024 * 1024)]);
    const bigId = await refusedFromFirstBytes(bigPng, { filename: 'scan', chunkSize: 8 * 1024 * 1024 });
    const bigStatus = await fetchStatus(server.url, bigId);
    expect(bigStatus).toMatchObject({ status: 'rejected', detectedType: 'image/png' });
    expect(bigStatus.reason).toMatch(/over the \d+-byte limit for image\/png/);
  });

  it('serves byte ranges of a ready upload', async () => {
    const data = pdf(100_000);
    const { url } = await tusUpload(server.url, data, { filename: 'range.pdf' });
    const id = uploadIdOf(url);
    await waitUntilSettled(server.url, id);
    const res = await download(id, { headers: { Range: 'bytes=100-199' } });
    expect(res.status).toBe(206);
    expect(Buffer.from(await res.arrayBuffer()).equals(data.subarray(100, 200))).toBe(true);
    if (setup === 'scaleout') {
      // fetch followed the presigned redirect to radosgw, which answered the range itself.
      expect(res.url).toContain('X-Amz-Signature');
    } else {
      expect(res.headers.get('content-range')).toBe(`bytes 100-199/${data.length}`);
      expect(res.headers.get('content-disposition')).toContain('filename="range.pdf"');
    }
  });

  it('deletes an upload with its stored bytes', async () => {
    const { url } = await tusUpload(server.url, pdf(), { filename: 'gone.pdf' });
    const id = uploadIdOf(url);
    await waitUntilSettled(server.url, id);
    const res = await fetch(`${server.url}/api/uploads/${id}`, { method: 'DELETE' });
    expect(res.status).toBe(204);
    expect((await fetchStatus(server.url, id)).status).toBe('deleted');
    expect((await download(id)).status).toBe(410);
    await expect(server.services.context.storage.readOriginal(id).then((s) => s.toArray())).rejects.toThrow();
    // Again: the same answer, and the event log holds one deletion.
    expect((await fetch(`${server.url}/api/uploads/${id}`, { method: 'DELETE' })).status).toBe(204);
    const events = await server.services.context.db.selectFrom('upload_events').select(['seq', 'to_status']).where('upload_id', '=', id).orderBy('seq').execute();
    expect(events.map((e) => e.to_status)).toEqual(['uploading', 'received', 'inspecting', 'ready', 'deleted']);
  });

  it('reports ready only when the database, the store and clamd answer', async () => {
    const res = await fetch(`${server.url}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, checks: { database: 'ok', storage: 'ok', clamd: 'ok' }, auth: 'open', scan: 'on', direct: setup === 'scaleout' ? 'on' : 'off', warning: expect.stringContaining('runs open') });
    expect((await fetch(`${server.url}/api/uploads/nope`)).status).toBe(404);
  });
});

describe('scale-out: two server instances share Postgres and S3', () => {
  let environment: TestEnvironment;
  let first: RunningServer;
  let second: RunningServer;

  beforeAll(async () => {
    environment = await createTestEnvironment('scaleout');
    first = await startTestServer(environment);
    second = await startTestServer(environment, { RUN_JOBS: 'false' });
  });
  afterAll(async () => {
    await second?.close();
    await first?.close();
    await environment?.destroy();
  });

  it('resumes on the second instance an upload the first one started', async () => {
    const data = pdf(12 * 1024 * 1024);
    const started = await tusUpload(first.url, data, { filename: 'travel.pdf', chunkSize: 5 * 1024 * 1024, abortAfterBytes: 5 * 1024 * 1024 });
    const id = uploadIdOf(started.url);
    await tusUpload(second.url, data, { filename: 'travel.pdf', chunkSize: 5 * 1024 * 1024, uploadUrl: `${second.url}/files/${id}` });
    const status = await waitUntilSettled(second.url, id);
    expect(status).toMatchObject({ status: 'ready', sha256: sha256(data), size: data.length });
  });

  it('finishes on the first instance a deferred-length upload whose length the second one learnt', async () => {
    const data = pdf(12 * 1024 * 1024 + 1024);
    const half = 6 * 1024 * 1024;
    const headers = { 'Tus-Resumable': '1.0.0' };
    const patch = (base: string, location: string, offset: number, end: number, extra: Record<string, string> = {}) =>
      fetch(new URL(location, base), {
        method: 'PATCH',
        headers: { ...headers, 'Upload-Offset': String(offset), 'Content-Type': 'application/offset+octet-stream', ...extra },
        body: new Uint8Array(data.subarray(offset, end)),
      });
    const metadata = `filename ${Buffer.from('travel.pdf').toString('base64')},filetype ${Buffer.from('application/pdf').toString('base64')}`;
    const created = await fetch(`${first.url}/files/`, { method: 'POST', headers: { ...headers, 'Upload-Defer-Length': '1', 'Upload-Metadata': metadata } });
    expect(created.status).toBe(201);
    const location = created.headers.get('location')!;
    // The first instance reads (and may cache) the upload while its length is still unknown.
    expect((await patch(first.url, location, 0, half)).status).toBe(204);
    // The second declares the length with its chunk.
    const declared = await patch(second.url, location, half, 2 * half, { 'Upload-Length': String(data.length) });
    expect(declared.status).toBe(204);
    // The last bytes go to the first instance again: it must know the length now, and finish.
    const last = await patch(first.url, location, 2 * half, data.length);
    expect(last.status).toBe(204);
    expect(last.headers.get('upload-offset')).toBe(String(data.length));
    const status = await waitUntilSettled(first.url, uploadIdOf(location));
    expect(status).toMatchObject({ status: 'ready', sha256: sha256(data), size: data.length });
  });
});

describe('scanning is required: clamd down', () => {
  const socketPath = path.join(os.tmpdir(), `clamd-later-${process.pid}.sock`);
  let environment: TestEnvironment;
  let server: RunningServer;
  let relay: net.Server | undefined;

  beforeAll(async () => {
    environment = await createTestEnvironment('embedded', { CLAMD_SOCKET: socketPath, JOB_MAX_ATTEMPTS: '20' });
    server = await startTestServer(environment);
  });
  afterAll(async () => {
    relay?.close();
    await server?.close();
    await environment?.destroy();
  });

  it('keeps an upload unscanned-and-unserved until clamd answers, then finishes it', async () => {
    const data = pdf(50_000);
    const { url } = await tusUpload(server.url, data, { filename: 'wait.pdf' });
    const id = uploadIdOf(url);
    const waiting = await eventually('a failed scan attempt', async () => {
      const status = await fetchStatus(server.url, id);
      return status.jobs[0]?.error ? status : undefined;
    });
    expect(waiting.status).toBe('inspecting');
    expect(waiting.jobs[0]!.error).toMatch(/clamd/i);
    expect((await fetch(`${server.url}/api/uploads/${id}/files/original`)).status).toBe(409);
    expect((await fetch(`${server.url}/readyz`)).status).toBe(503);

    // clamd comes back: a relay at the configured socket to the real one.
    // Half-open both ways: PING ends its side first and still reads the PONG.
    relay = net.createServer({ allowHalfOpen: true }, (client) => client.pipe(net.connect({ path: clamdSocket, allowHalfOpen: true })).pipe(client));
    await new Promise<void>((resolve) => relay!.listen(socketPath, resolve));
    const status = await waitUntilSettled(server.url, id, 60_000);
    expect(status).toMatchObject({ status: 'ready', scan: 'clean', sha256: sha256(data) });
    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status, await ready.clone().text()).toBe(200);
  });
});
