import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../server/main/start.ts';
import { eventually } from './support/eventually.ts';
import { pdf, sha256 } from './support/samples.ts';
import { createTestEnvironment, setups, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { bearer, mintToken, testAuthSecret } from './support/tokens.ts';
import { request } from './support/tusRequests.ts';
import { uploadIdOf, waitUntilSettled } from './support/uploads.ts';

const KiB = 1024;
const OCTET = 'application/offset+octet-stream';
const digest = (algorithm: string, data: Buffer) => createHash(algorithm).update(data).digest('base64');
const crc32Of = (data: Buffer) => {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(crc32(data) >>> 0);
  return out.toString('base64');
};

/** The tus checksum extension on both stores: raw HTTP for each refusal, tuspy for a client that sends checksums. */
describe.each(setups)('tus checksum extension (%s)', (setup) => {
  let environment: TestEnvironment;
  let server: RunningServer;
  let auth: Record<string, string>;
  let token: string;

  beforeAll(async () => {
    environment = await createTestEnvironment(setup, { AUTH_SECRET: testAuthSecret, PATCH_IDLE_TIMEOUT: '1s' });
    server = await startTestServer(environment);
    token = await mintToken('alice');
    auth = bearer(token);
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
  });

  const create = async (size: number) => {
    const res = await request(`${server.url}/files/`, 'POST', { ...auth, 'Upload-Length': size, 'Upload-Metadata': `filename ${Buffer.from('doc.pdf').toString('base64')},filetype ${Buffer.from('application/pdf').toString('base64')}` });
    expect(res.status).toBe(201);
    return res.headers.location!;
  };
  const patch = (url: string, body: Buffer, offset: number, checksum: string) =>
    request(url, 'PATCH', { ...auth, 'Upload-Offset': offset, 'Content-Type': OCTET, 'Content-Length': body.length, 'Upload-Checksum': checksum }, body);
  const offsetOf = async (url: string) => Number((await request(url, 'HEAD', auth)).headers['upload-offset']);

  it('announces checksum and concatenation with md5, sha1, sha256 and crc32 on OPTIONS', async () => {
    const res = await request(`${server.url}/files/`, 'OPTIONS', {});
    expect(res.status).toBe(204);
    expect(String(res.headers['tus-extension']).split(',')).toEqual(expect.arrayContaining(['creation', 'checksum', 'concatenation']));
    expect(res.headers['tus-checksum-algorithm']).toBe('md5,sha1,sha256,crc32');
    expect(res.headers['access-control-allow-headers']).toContain('Upload-Checksum');
  });

  it('verifies each PATCH: a mismatch is 460 and moves nothing, an unknown algorithm 400; right ones append and the file ends ready', { timeout: 60_000 }, async () => {
    const file = pdf(300 * KiB);
    const url = await create(file.length);
    const first = file.subarray(0, 100 * KiB);

    const wrong = await patch(url, first, 0, `sha256 ${digest('sha256', file.subarray(1, 100 * KiB + 1))}`);
    expect(wrong.status).toBe(460);
    expect(wrong.text).toContain('Checksum Mismatch');
    expect(await offsetOf(url)).toBe(0);

    const unknown = await patch(url, first, 0, `sha3-256 ${digest('sha256', first)}`);
    expect(unknown.status).toBe(400);
    expect(unknown.text).toContain('sha3-256 is not supported');
    const malformed = await patch(url, first, 0, 'sha256');
    expect(malformed.status).toBe(400);
    expect(await offsetOf(url)).toBe(0);

    expect((await patch(url, first, 0, `sha256 ${digest('sha256', first)}`)).status).toBe(204);
    const second = file.subarray(100 * KiB, 200 * KiB);
    expect((await patch(url, second, 100 * KiB, `crc32 ${crc32Of(second)}`)).status).toBe(204);
    const rest = file.subarray(200 * KiB);
    expect((await patch(url, rest, 200 * KiB, `md5 ${digest('md5', rest.subarray(1))}`)).status).toBe(460);
    expect(await offsetOf(url)).toBe(200 * KiB);
    expect((await patch(url, rest, 200 * KiB, `md5 ${digest('md5', rest)}`)).status).toBe(204);

    const status = await waitUntilSettled(server.url, uploadIdOf(url), 30_000, auth);
    expect(status).toMatchObject({ status: 'ready', size: file.length, sha256: sha256(file) });
  });

  it('checks a creation-with-upload POST too: a mismatch creates nothing, a match creates the upload at the body\'s offset', async () => {
    const file = pdf(50 * KiB);
    const body = file.subarray(0, 20 * KiB);
    const post = (checksum: string) =>
      request(`${server.url}/files/`, 'POST', { ...auth, 'Upload-Length': file.length, 'Upload-Metadata': `filename ${Buffer.from('doc.pdf').toString('base64')}`, 'Content-Type': OCTET, 'Upload-Checksum': checksum }, body);
    const listed = async () => ((await (await fetch(`${server.url}/api/uploads?limit=100`, { headers: auth })).json()) as { items: unknown[] }).items.length;
    const before = await listed();
    const wrong = await post(`sha1 ${digest('sha1', file.subarray(1, 20 * KiB + 1))}`);
    expect([wrong.status, wrong.headers.location]).toEqual([460, undefined]);
    expect(await listed()).toBe(before);
    const right = await post(`sha1 ${digest('sha1', body)}`);
    expect([right.status, right.headers['upload-offset']]).toEqual([201, String(20 * KiB)]);
    expect(await listed()).toBe(before + 1);
  });

  /** Sends the headers and `sent` bytes of a checksummed PATCH of `body`, then stalls or drops the connection. */
  const cutPatch = (url: string, body: Buffer, sent: number, how: 'drop' | 'stall') =>
    new Promise<void>((resolve) => {
      const req = http.request(url, {
        method: 'PATCH',
        headers: { ...auth, 'Tus-Resumable': '1.0.0', 'Upload-Offset': 0, 'Content-Type': OCTET, 'Content-Length': body.length, 'Upload-Checksum': `sha1 ${digest('sha1', body)}` },
      });
      req.on('error', () => resolve());
      req.on('close', () => resolve());
      req.on('response', (res) => res.resume());
      req.write(body.subarray(0, sent), () => {
        if (how === 'drop') setTimeout(() => req.destroy(), 200);
      });
    });

  it('keeps nothing of a checksummed PATCH cut mid-body, or one that went idle past PATCH_IDLE_TIMEOUT', { timeout: 30_000 }, async () => {
    const file = pdf(400 * KiB);
    const url = await create(file.length);
    await cutPatch(url, file, 250 * KiB, 'drop');
    await new Promise((r) => setTimeout(r, 1000));
    expect(await offsetOf(url)).toBe(0);
    // The server ends it after 1 s without a byte (PATCH_IDLE_TIMEOUT); a plain PATCH would keep what came.
    const started = Date.now();
    await cutPatch(url, file, 250 * KiB, 'stall');
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    await new Promise((r) => setTimeout(r, 500));
    expect(await offsetOf(url)).toBe(0);
    if (setup === 'embedded') expect((await fs.stat(path.join(environment.dataDir, 'uploads', uploadIdOf(url)))).size).toBe(0);

    // The same cut without a checksum keeps what arrived: what the assertions above would see if the body were not held back.
    await new Promise<void>((resolve) => {
      const req = http.request(url, { method: 'PATCH', headers: { ...auth, 'Tus-Resumable': '1.0.0', 'Upload-Offset': 0, 'Content-Type': OCTET, 'Content-Length': file.length } });
      req.on('error', () => resolve()).on('close', () => resolve());
      req.write(file.subarray(0, 250 * KiB), () => setTimeout(() => req.destroy(), 500));
    });
    await eventually('the bytes that arrived to be kept', async () => (await offsetOf(url)) > 0);
  });

  const tuspy = async (file: string, chunkSize: number, mode: 'good' | 'corrupt') => {
    const script = path.join(import.meta.dirname, 'support', 'tuspyUpload.py');
    // Debian's python3, where python3-tuspy is installed (a pyenv python3 first on PATH would not have it).
    const { stdout } = await promisify(execFile)('/usr/bin/python3', [script, `${server.url}/files/`, token, file, String(chunkSize), mode]);
    return JSON.parse(stdout) as { url?: string; offset: number; error?: number; checksums: string[] };
  };

  it('tuspy with upload_checksum uploads in checksummed chunks to ready; one damaged checksum is refused 460 and the offset stays', { timeout: 90_000 }, async () => {
    const file = pdf(700 * KiB);
    const local = path.join(environment.dataDir, 'tuspy.pdf');
    await fs.writeFile(local, file);

    const good = await tuspy(local, 128 * KiB, 'good');
    expect(good.error).toBeUndefined();
    expect(good.checksums).toHaveLength(6);
    expect(good.checksums[0]).toBe(`sha1 ${digest('sha1', file.subarray(0, 128 * KiB))}`);
    const status = await waitUntilSettled(server.url, uploadIdOf(good.url!), 30_000, auth);
    expect(status).toMatchObject({ status: 'ready', size: file.length, sha256: sha256(file) });

    const damaged = await tuspy(local, 128 * KiB, 'corrupt');
    expect(damaged.error).toBe(460);
    expect(await offsetOf(damaged.url!)).toBe(2 * 128 * KiB);
  });
});
