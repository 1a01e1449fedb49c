import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../server/start.ts';
import { eicar, pdf, png, sha256 } from './support/samples.ts';
import { createTestEnvironment, setups, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { fetchStatus, tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';

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

  it('marks the EICAR test file infected and never serves it', async () => {
    const { url } = await tusUpload(server.url, eicar(), { filename: 'notes.pdf', filetype: 'application/pdf' });
    const status = await waitUntilSettled(server.url, uploadIdOf(url));
    expect(status.status).toBe('infected');
    expect(status.reason).toMatch(/ClamAV found .*eicar/i);
    expect((await download(status.id)).status).toBe(410);
  });

  it('rejects bytes that disagree with the declared type', async () => {
    const { url } = await tusUpload(server.url, png(), { filename: 'invoice.pdf', filetype: 'application/pdf' });
    const status = await waitUntilSettled(server.url, uploadIdOf(url));
    expect(status).toMatchObject({ status: 'rejected', detectedType: 'image/png' });
    expect(status.reason).toContain('claimed application/pdf');
  });
});
