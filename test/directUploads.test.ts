import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanUpExpired } from '../server/jobs/cleanup.ts';
import type { RunningServer } from '../server/main/start.ts';
import { testS3Client } from './services/env.ts';
import { eventually } from './support/eventually.ts';
import { pdf, png, sha256 } from './support/samples.ts';
import { createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { bearer, mintToken, testAuthSecret } from './support/tokens.ts';
import { fetchStatus, waitUntilSettled } from './support/uploads.ts';

/**
 * Direct-to-S3 uploads over raw HTTP, as Uppy's AwsS3 plugin and Companion speak them, against
 * radosgw: the routes' owners and tokens, what S3 itself refuses of what the server signed, the
 * checks at completion and inspection, abort and cleanup. (Uppy in Chromium: directUploadsBrowser.test.ts.)
 */

const MiB = 1024 * 1024;
const partSize = 5 * MiB;

interface Created {
  key: string;
  uploadId: string;
  bucket: string;
}

describe('direct-to-S3 uploads (scaleout)', () => {
  let environment: TestEnvironment;
  let server: RunningServer;
  let alice: string;
  let bob: string;
  const s3 = testS3Client();

  beforeAll(async () => {
    // Cleanup is run by hand here, so the server's own schedule must not race it.
    environment = await createTestEnvironment('scaleout', { AUTH_SECRET: testAuthSecret, RATE_LIMIT_UPLOADS: '0', CLEANUP_INTERVAL: '1h', UPLOAD_EXPIRES_AFTER: '1h' });
    server = await startTestServer(environment);
    alice = await mintToken('alice');
    bob = await mintToken('bob');
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
    s3.destroy();
  });

  const bucket = () => environment.env.S3_BUCKET!;
  const multipartsOf = async (key: string) => ((await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket(), Prefix: key }))).Uploads ?? []).map((u) => u.Key);
  const objectsOf = async (key: string) => ((await s3.send(new ListObjectsV2Command({ Bucket: bucket(), Prefix: key }))).Contents ?? []).map((o) => o.Key);

  const call = (method: string, path: string, token: string | undefined, body?: unknown, base = server.url) =>
    fetch(`${base}${path}`, {
      method,
      headers: { ...(token ? bearer(token) : {}), ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const create = async (token: string, file: { filename: string; type: string; size?: number }, base = server.url): Promise<Created> => {
    const res = await call('POST', '/s3/multipart', token, { filename: file.filename, type: file.type, metadata: { name: file.filename, type: file.type, ...(file.size === undefined ? {} : { size: file.size }), albumId: 'a1' } }, base);
    expect(res.status, await res.clone().text()).toBe(200);
    return (await res.json()) as Created;
  };
  const partPath = (c: Created, part: number | string) => `/s3/multipart/${encodeURIComponent(c.uploadId)}/${part}?key=${c.key}`;
  const uploadPath = (c: Created, tail = '') => `/s3/multipart/${encodeURIComponent(c.uploadId)}${tail}?key=${c.key}`;
  const signed = async (token: string, c: Created, part: number, base = server.url) => {
    const res = await call('GET', partPath(c, part), token, undefined, base);
    expect(res.status, await res.clone().text()).toBe(200);
    return (await res.json()) as { url: string; expires: number };
  };
  /** PUTs each part where S3's signed URL says, as a browser would; the parts as Uppy completes with them. */
  const putParts = async (token: string, c: Created, data: Buffer, size = partSize) => {
    const parts: { PartNumber: number; ETag: string }[] = [];
    for (let offset = 0, n = 1; offset < data.length; offset += size, n++) {
      const { url } = await signed(token, c, n);
      const put = await fetch(url, { method: 'PUT', body: new Uint8Array(data.subarray(offset, offset + size)) });
      expect(put.status, await put.clone().text()).toBe(200);
      parts.push({ PartNumber: n, ETag: put.headers.get('etag')! });
    }
    return parts;
  };
  const complete = (token: string, c: Created, parts: unknown) => call('POST', uploadPath(c, '/complete'), token, { parts });

  it('a file sent part by part to the bucket goes through the same lifecycle: received, inspected, ready, the same bytes', async () => {
    const data = pdf(11 * MiB);
    const c = await create(alice, { filename: 'big.pdf', type: 'application/pdf', size: data.length });
    expect(c.bucket).toBe(bucket());
    const before = await fetchStatus(server.url, c.key, bearer(alice));
    expect(before).toMatchObject({ status: 'uploading', protocol: 's3-multipart', size: data.length, offset: 0, metadata: { albumId: 'a1' }, links: { upload: null } });

    const parts = await putParts(alice, c, data);
    const listed = (await (await call('GET', uploadPath(c), alice)).json()) as { PartNumber: number; Size: number; ETag: string }[];
    expect(listed.map((p) => [p.PartNumber, p.Size])).toEqual([[1, partSize], [2, partSize], [3, data.length - 2 * partSize]]);
    // Bytes in the bucket are not bytes the server saw: the offset stays 0 until completion.
    expect((await fetchStatus(server.url, c.key, bearer(alice))).offset).toBe(0);

    const done = await complete(alice, c, parts);
    expect(done.status, await done.clone().text()).toBe(200);
    expect(await done.json()).toMatchObject({ key: c.key, bucket: bucket(), location: `${server.url}/api/uploads/${c.key}` });
    const settled = await waitUntilSettled(server.url, c.key, 60_000, bearer(alice));
    expect(settled).toMatchObject({ status: 'ready', protocol: 's3-multipart', size: data.length, offset: data.length, sha256: sha256(data), scan: 'clean' });
    // A repeated completion (a retried request) answers as the first did.
    expect((await complete(alice, c, parts)).status).toBe(200);
    const original = await fetch(`${server.url}/api/uploads/${c.key}/files/original`, { headers: bearer(alice), redirect: 'manual' });
    expect(original.status).toBe(302);
    expect(sha256(Buffer.from(await (await fetch(original.headers.get('location')!)).arrayBuffer()))).toBe(sha256(data));
  });

  it('every route refuses a missing token (401), answers another owner as an unknown upload (404), and serves the owner', async () => {
    const c = await create(alice, { filename: 'mine.pdf', type: 'application/pdf' });
    const post = await (await call('GET', '/s3/params?filename=p.pdf&type=application/pdf&size=100', alice)).json() as { id: string };
    const routes: [string, string, unknown?][] = [
      ['POST', '/s3/multipart', { filename: 'x.pdf', type: 'application/pdf' }],
      ['GET', uploadPath(c)],
      ['GET', partPath(c, 1)],
      ['POST', uploadPath(c, '/complete'), { parts: [] }],
      ['GET', '/s3/params?filename=x.pdf&type=application/pdf'],
      ['POST', `/s3/params/${post.id}/complete`],
      ['DELETE', uploadPath(c)],
    ];
    for (const [method, path, body] of routes) {
      const anonymous = await call(method, path, undefined, body);
      expect(anonymous.status, `${method} ${path} without a token`).toBe(401);
      expect(anonymous.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(await anonymous.json()).toHaveProperty('error');
      if (method === 'POST' && path === '/s3/multipart') continue;
      if (path.startsWith('/s3/params?')) continue;
      const other = await call(method, path, bob, body);
      expect(other.status, `${method} ${path} as another owner`).toBe(404);
      expect(await other.json()).toEqual({ error: 'no such upload' });
    }
    // The owner reaches each one (an empty completion is the owner's own mistake, not a 404).
    expect((await call('GET', uploadPath(c), alice)).status).toBe(200);
    expect((await call('GET', partPath(c, 1), alice)).status).toBe(200);
    expect((await complete(alice, c, [])).status).toBe(400);
    expect((await call('POST', `/s3/params/${post.id}/complete`, alice)).status).toBe(409);
    // The key names the upload, the uploadId must be its own: another multipart id is unknown too.
    const other = await create(alice, { filename: 'other.pdf', type: 'application/pdf' });
    expect((await call('GET', `/s3/multipart/${encodeURIComponent(other.uploadId)}/1?key=${c.key}`, alice)).status).toBe(404);
    expect((await call('GET', `/s3/multipart/${encodeURIComponent(c.uploadId)}/1?key=../${c.key}`, alice)).status).toBe(404);
    // The tus endpoint does not take a direct upload's bytes: it has no tus upload behind it.
    for (const method of ['HEAD', 'PATCH']) {
      const tus = await fetch(`${server.url}/files/${c.key}`, {
        method,
        headers: { ...bearer(alice), 'Tus-Resumable': '1.0.0', 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
        body: method === 'PATCH' ? new Uint8Array(10) : undefined,
      });
      expect(tus.status, `${method} /files/<direct upload>`).toBe(404);
    }
    expect((await call('DELETE', uploadPath(c), alice)).status).toBe(200);
  });

  it('answers CORS preflights of /s3/ and refuses what the policy refuses at creation', async () => {
    const preflight = await fetch(`${server.url}/s3/multipart`, { method: 'OPTIONS', headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST' } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-methods')).toContain('POST');
    expect(preflight.headers.get('access-control-allow-headers')).toContain('Authorization');
    const exe = await call('POST', '/s3/multipart', alice, { filename: 'run.exe', type: 'application/x-msdownload' });
    expect(exe.status).toBe(415);
    expect((await exe.json()).error).toContain('not allowed');
    const tooBig = await call('POST', '/s3/multipart', alice, { filename: 'huge.png', type: 'image/png', metadata: { size: 10 ** 12 } });
    expect(tooBig.status).toBe(413);
    expect((await call('POST', '/s3/multipart', alice, { filename: 3 })).status).toBe(400);
  });

  it('S3 refuses a tampered part URL, one signed for another part, and one past S3_PRESIGN_TTL; the server signs no part beyond what the size needs', async () => {
    const c = await create(alice, { filename: 'two.pdf', type: 'application/pdf', size: 6 * MiB });
    const { url, expires } = await signed(alice, c, 1);
    expect(expires).toBe(15 * 60);
    const body = new Uint8Array(pdf(1024));
    const tampered = new URL(url);
    tampered.searchParams.set('X-Amz-Signature', tampered.searchParams.get('X-Amz-Signature')!.replace(/^./, (ch) => (ch === 'a' ? 'b' : 'a')));
    expect((await fetch(tampered, { method: 'PUT', body })).status).toBe(403);
    const otherPart = new URL(url);
    otherPart.searchParams.set('partNumber', '2');
    expect((await fetch(otherPart, { method: 'PUT', body })).status).toBe(403);
    // 6 MiB needs at most 2 parts of S3's smallest 5 MiB.
    const third = await call('GET', partPath(c, 3), alice);
    expect(third.status).toBe(400);
    expect((await third.json()).error).toContain('from 1 to 2');
    expect((await call('GET', partPath(c, 'x'), alice)).status).toBe(400);

    const shortLived = await startTestServer(environment, { S3_PRESIGN_TTL: '1s' });
    try {
      const d = await create(alice, { filename: 'late.pdf', type: 'application/pdf' }, shortLived.url);
      const late = await signed(alice, d, 1, shortLived.url);
      expect(late.expires).toBe(1);
      await eventually('S3 refusing the expired part URL', async () => (await fetch(late.url, { method: 'PUT', body })).status === 403, 30_000, 500);
    } finally {
      await shortLived.close();
    }
  });

  it('rejects a disguised file at inspection after a ranged read of its first bytes, without reading it all', async () => {
    const disguised = Buffer.concat([png(), Buffer.alloc(6 * MiB, 1)]);
    const c = await create(alice, { filename: 'report.pdf', type: 'application/pdf', size: disguised.length });
    expect((await complete(alice, c, await putParts(alice, c, disguised))).status).toBe(200);
    const settled = await waitUntilSettled(server.url, c.key, 60_000, bearer(alice));
    expect(settled).toMatchObject({ status: 'rejected', detectedType: 'image/png', reason: expect.stringContaining('its first bytes are image/png') });
    // The full read gives the sha256: a rejection on the ranged read has none.
    expect(settled.sha256).toBeNull();
    await eventually('the rejected object removed', async () => (await objectsOf(c.key)).length === 0);
  });

  it('rejects and aborts at completion a total over the limit, or other than the size declared', async () => {
    const limited = await mintToken('carol', { claims: { max_size: 6 * MiB } });
    const c = await create(limited, { filename: 'over.pdf', type: 'application/pdf' });
    const parts = await putParts(limited, c, pdf(7 * MiB));
    const over = await complete(limited, c, parts);
    expect(over.status).toBe(413);
    expect((await over.json()).error).toMatch(/over the 6291456-byte limit.*aborted/);
    expect(await fetchStatus(server.url, c.key, bearer(limited))).toMatchObject({ status: 'rejected' });
    expect(await multipartsOf(c.key)).toEqual([]);
    expect(await objectsOf(c.key)).toEqual([]);
    expect((await call('GET', partPath(c, 1), limited)).status).toBe(409);

    const d = await create(alice, { filename: 'liar.pdf', type: 'application/pdf', size: 5 * MiB + 10 });
    const sent = await putParts(alice, d, pdf(5 * MiB + 20));
    const mismatch = await complete(alice, d, sent);
    expect(mismatch.status).toBe(413);
    expect((await mismatch.json()).error).toContain(`hold ${5 * MiB + 20} bytes but ${5 * MiB + 10} were declared`);
    expect(await multipartsOf(d.key)).toEqual([]);
    // A part the bucket does not hold (a made-up ETag) is refused before anything is decided.
    const e = await create(alice, { filename: 'fake.pdf', type: 'application/pdf' });
    expect((await complete(alice, e, [{ PartNumber: 1, ETag: '"0123"' }])).status).toBe(400);
    expect((await fetchStatus(server.url, e.key, bearer(alice))).status).toBe('uploading');
  });

  it('a presigned POST: S3 refuses a body over its content-length-range; one within it is found and inspected', async () => {
    const data = pdf(3000);
    const res = await call('GET', `/s3/params?filename=doc.pdf&type=application/pdf&size=${data.length}&metadata[albumId]=a2`, alice);
    expect(res.status, await res.clone().text()).toBe(200);
    const params = (await res.json()) as { method: string; url: string; fields: Record<string, string>; expires: number; id: string };
    // It lands beside the original's key: a second POST under the same policy never replaces what was inspected.
    expect(params).toMatchObject({ method: 'POST', expires: 15 * 60, fields: { key: `${params.id}.post`, 'Content-Type': 'application/pdf' } });
    expect(await fetchStatus(server.url, params.id, bearer(alice))).toMatchObject({ status: 'uploading', protocol: 's3-post', metadata: { albumId: 'a2' } });
    const form = (file: Buffer, type = 'application/pdf') => {
      const body = new FormData();
      for (const [name, value] of Object.entries(params.fields)) body.append(name, name === 'Content-Type' ? type : value);
      body.append('file', new Blob([new Uint8Array(file)]));
      return body;
    };
    const tooLarge = await fetch(params.url, { method: 'POST', body: form(pdf(data.length + 1)) });
    expect(tooLarge.status).toBe(400);
    expect(await tooLarge.text()).toContain('EntityTooLarge');
    expect((await fetch(params.url, { method: 'POST', body: form(data, 'text/html') })).status).toBe(403);
    const posted = await fetch(params.url, { method: 'POST', body: form(data) });
    expect(posted.status, await posted.clone().text()).toBe(201);

    expect((await call('POST', `/s3/params/${params.id}/complete`, alice)).status).toBe(200);
    expect(await waitUntilSettled(server.url, params.id, 60_000, bearer(alice))).toMatchObject({ status: 'ready', size: data.length, sha256: sha256(data) });
    const other = pdf(2000);
    expect((await fetch(params.url, { method: 'POST', body: form(other) })).status).toBe(201);
    const original = await fetch(`${server.url}/api/uploads/${params.id}/files/original`, { headers: bearer(alice), redirect: 'manual' });
    expect(sha256(Buffer.from(await (await fetch(original.headers.get('location')!)).arrayBuffer()))).toBe(sha256(data));
  });

  it('Idempotency-Key: a retried creation gets the same upload, another creation with the key a 422 problem', async () => {
    const keyed = (key: string, body: unknown, token = alice) =>
      fetch(`${server.url}/s3/multipart`, { method: 'POST', headers: { ...bearer(token), 'Content-Type': 'application/json', 'Idempotency-Key': key }, body: JSON.stringify(body) });
    const body = { filename: 'once.pdf', type: 'application/pdf', metadata: { size: 6 * MiB } };
    const first = (await (await keyed('"k-1"', body)).json()) as Created;
    const again = await keyed('"k-1"', body);
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual(first);
    // The same key from another owner is another key.
    expect(((await (await keyed('"k-1"', body, bob)).json()) as Created).key).not.toBe(first.key);
    const reused = await keyed('"k-1"', { ...body, filename: 'other.pdf' });
    expect(reused.status).toBe(422);
    expect(reused.headers.get('content-type')).toContain('application/problem+json');
    expect(await reused.json()).toMatchObject({ status: 422, title: 'Idempotency-Key is already used' });
    expect((await keyed('"two", "keys"', body)).status).toBe(400);

    const params = (path: string) => fetch(`${server.url}${path}`, { headers: { ...bearer(alice), 'Idempotency-Key': '"p-1"' } });
    const post = (await (await params('/s3/params?filename=p.pdf&type=application/pdf&size=100')).json()) as { id: string };
    expect(((await (await params('/s3/params?filename=p.pdf&type=application/pdf&size=100')).json()) as { id: string }).id).toBe(post.id);
    expect((await params('/s3/params?filename=p.pdf&type=application/pdf&size=200')).status).toBe(422);
  });

  it('the cleanup finds a presigned POST nobody completed, and expires and aborts an abandoned multipart upload', async () => {
    const params = (await (await call('GET', '/s3/params?filename=quiet.pdf&type=application/pdf', alice)).json()) as { url: string; fields: Record<string, string>; id: string };
    const data = pdf(2000);
    const body = new FormData();
    for (const [name, value] of Object.entries(params.fields)) body.append(name, value);
    body.append('file', new Blob([new Uint8Array(data)]));
    expect((await fetch(params.url, { method: 'POST', body })).status).toBe(201);

    const abandoned = await create(alice, { filename: 'abandoned.pdf', type: 'application/pdf' });
    await putParts(alice, abandoned, pdf(5 * MiB));
    expect(await multipartsOf(abandoned.key)).toEqual([abandoned.key]);

    expect(await cleanUpExpired(server.services.context)).toMatchObject({ received: 1, expired: 0 });
    expect(await waitUntilSettled(server.url, params.id, 60_000, bearer(alice))).toMatchObject({ status: 'ready', size: data.length });
    // The cleanup's clock, not the wall's: a slow machine cannot make the upload expire early.
    const later = await cleanUpExpired(server.services.context, { now: new Date(Date.now() + 2 * 3600_000) });
    expect(later.expired).toBeGreaterThanOrEqual(1);
    expect(await fetchStatus(server.url, abandoned.key, bearer(alice))).toMatchObject({ status: 'expired' });
    expect(await multipartsOf(abandoned.key)).toEqual([]);
  });

  it('abort: the upload is deleted and the bucket holds none of its parts', async () => {
    const c = await create(alice, { filename: 'gone.pdf', type: 'application/pdf' });
    await putParts(alice, c, pdf(5 * MiB));
    const aborted = await call('DELETE', uploadPath(c), alice);
    expect(aborted.status).toBe(200);
    expect(await aborted.json()).toEqual({});
    expect(await fetchStatus(server.url, c.key, bearer(alice))).toMatchObject({ status: 'deleted', reason: 'aborted by the client' });
    expect(await multipartsOf(c.key)).toEqual([]);
    expect((await call('DELETE', uploadPath(c), alice)).status).toBe(200);
    expect((await call('GET', partPath(c, 1), alice)).status).toBe(409);
  });
});

describe('direct-to-S3 uploads (embedded default)', () => {
  it('every route answers a 404 naming S3_BUCKET', { timeout: 60_000 }, async () => {
    const environment = await createTestEnvironment('embedded', { AUTH_SECRET: testAuthSecret });
    const server = await startTestServer(environment).catch(async (error: unknown) => {
      await environment.destroy();
      throw error;
    });
    try {
      const token = await mintToken('alice');
      for (const [method, path] of [['POST', '/s3/multipart'], ['GET', '/s3/params?filename=a.pdf&type=application/pdf'], ['GET', '/s3/multipart/x/1?key=y'], ['DELETE', '/s3/multipart/x?key=y']] as const) {
        const res = await fetch(`${server.url}${path}`, { method, headers: bearer(token) });
        expect(res.status, `${method} ${path}`).toBe(404);
        expect((await res.json()).error).toContain('S3_BUCKET');
      }
    } finally {
      await server.close();
      await environment.destroy();
    }
  });
});
