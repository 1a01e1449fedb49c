import fs from 'node:fs/promises';
import path from 'node:path';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanUpExpired } from '../server/jobs/cleanup.ts';
import type { RunningServer } from '../server/main/start.ts';
import { testS3ClientConfig } from './services/env.ts';
import { pdf, png, sha256 } from './support/samples.ts';
import { createTestEnvironment, setups, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { bearer, mintToken, testAuthSecret } from './support/tokens.ts';
import { request } from './support/tusRequests.ts';
import { tusRefusal, tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';

const MiB = 1024 * 1024;
const OCTET = 'application/offset+octet-stream';
const metadata = (filename: string, type: string) => `filename ${Buffer.from(filename).toString('base64')},filetype ${Buffer.from(type).toString('base64')}`;

/** The tus concatenation extension, as tus-js-client's parallelUploads uses it, on both stores. */
describe.each(setups)('tus concatenation (%s)', (setup) => {
  let environment: TestEnvironment;
  let server: RunningServer;
  let alice: Record<string, string>;
  let bob: Record<string, string>;

  beforeAll(async () => {
    environment = await createTestEnvironment(setup, { AUTH_SECRET: testAuthSecret });
    server = await startTestServer(environment);
    alice = bearer(await mintToken('alice'));
    bob = bearer(await mintToken('bob'));
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
  });

  /** The server's own count of a final's bytes copied inside the store and passed through the process. */
  const concatenatedBytes = async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const read = (path: string) => Number(new RegExp(`^upload_server_concatenated_bytes_total\\{path="${path}"\\} (\\d+)`, 'm').exec(text)?.[1]);
    return { inStore: read('in_store'), throughServer: read('through_server') };
  };

  /** tus-js-client with parallelUploads: 4; resolves with the final's URL and the partial uploads' URLs. */
  const parallelUpload = async (data: Buffer, filename: string, filetype: string) => {
    const partials: string[] = [];
    const { url } = await tusUpload(server.url, data, {
      filename,
      filetype,
      headers: alice,
      parallelUploads: 4,
      onResponse: (method, status, location) => {
        if (method === 'POST' && status === 201 && location) partials.push(location);
      },
    });
    return { url, partials: partials.filter((location) => location !== url) };
  };

  const storedObjectParts = async (key: string) => {
    const s3 = new S3Client(testS3ClientConfig());
    try {
      const { ETag } = await s3.send(new HeadObjectCommand({ Bucket: environment.env.S3_BUCKET, Key: key }));
      return Number(/-(\d+)"?$/.exec(ETag ?? '')?.[1] ?? 1);
    } finally {
      s3.destroy();
    }
  };

  it('parallelUploads: 4 of a 24 MiB file ends ready with its sha256; on S3 every part is copied inside the store', { timeout: 120_000 }, async () => {
    const file = pdf(24 * MiB);
    const before = await concatenatedBytes();
    const { url, partials } = await parallelUpload(file, 'report.pdf', 'application/pdf');
    expect(partials).toHaveLength(4);
    const status = await waitUntilSettled(server.url, uploadIdOf(url), 90_000, alice);
    expect(status).toMatchObject({ status: 'ready', filename: 'report.pdf', size: file.length, sha256: sha256(file), owner: 'alice' });

    const after = await concatenatedBytes();
    if (setup === 'scaleout') {
      // 6 MiB partials, each at least S3's 5 MiB part minimum: four UploadPartCopy parts, no byte through the server.
      expect(after.inStore - before.inStore).toBe(file.length);
      expect(after.throughServer - before.throughServer).toBe(0);
      expect(await storedObjectParts(uploadIdOf(url))).toBe(4);
    } else {
      expect(after.throughServer - before.throughServer).toBe(file.length);
    }
    // The partials are gone, from the store and as uploads; only the final is listed.
    for (const partial of partials) expect((await request(partial, 'HEAD', alice)).status).toBe(404);
    if (setup === 'embedded') {
      for (const partial of partials) await expect(fs.stat(path.join(environment.dataDir, 'uploads', uploadIdOf(partial)))).rejects.toThrow();
    }
    const { items } = (await (await fetch(`${server.url}/api/uploads`, { headers: alice })).json()) as { items: { id: string }[] };
    expect(items.map((item) => item.id)).toContain(uploadIdOf(url));
    for (const partial of partials) expect(items.map((item) => item.id)).not.toContain(uploadIdOf(partial));

    // "After successful concatenation, the Upload-Offset and Upload-Length MUST be set and their values MUST be equal."
    const head = await request(url, 'HEAD', alice);
    expect(head.headers['upload-length']).toBe(String(file.length));
    expect(head.headers['upload-offset']).toBe(String(file.length));
    // As tus-js-client sent it: its partials in the file's order (their creations answered in any order).
    const concat = String(head.headers['upload-concat']);
    expect(concat.startsWith('final;')).toBe(true);
    expect(concat.slice('final;'.length).split(' ').sort()).toEqual([...partials].sort());
  });

  it('a 2 MiB file in four 512 KiB partials (under S3\'s 5 MiB part minimum) is copied through the server and ends ready', { timeout: 60_000 }, async () => {
    const file = pdf(2 * MiB);
    const before = await concatenatedBytes();
    const { url } = await parallelUpload(file, 'small.pdf', 'application/pdf');
    expect(await waitUntilSettled(server.url, uploadIdOf(url), 30_000, alice)).toMatchObject({ status: 'ready', sha256: sha256(file) });
    const after = await concatenatedBytes();
    expect(after.throughServer - before.throughServer).toBe(file.length);
    expect(after.inStore - before.inStore).toBe(0);
  });

  const createPartial = async (who: Record<string, string>, data: Buffer) => {
    const res = await request(`${server.url}/files/`, 'POST', { ...who, 'Upload-Concat': 'partial', 'Upload-Length': data.length, 'Content-Type': OCTET }, data);
    expect(res.status).toBe(201);
    expect(res.headers['upload-offset']).toBe(String(data.length));
    return res.headers.location!;
  };
  const createFinal = (who: Record<string, string>, urls: string[], more: Record<string, string | number> = {}) =>
    request(`${server.url}/files/`, 'POST', { ...who, 'Upload-Concat': `final;${urls.join(' ')}`, 'Upload-Metadata': metadata('doc.pdf', 'application/pdf'), ...more });

  it('a partial answers HEAD with Upload-Concat: partial; a final\'s PATCH is 403 and leaves it whole', { timeout: 60_000 }, async () => {
    const file = pdf(300 * 1024);
    const first = await createPartial(alice, file.subarray(0, 1000));
    const second = await createPartial(alice, file.subarray(1000));
    const head = await request(first, 'HEAD', alice);
    expect(head.headers['upload-concat']).toBe('partial');
    expect(head.headers['upload-offset']).toBe('1000');
    const final = await createFinal(alice, [first, new URL(second).pathname]);
    expect(final.status).toBe(201);
    const url = final.headers.location!;
    const refused = await request(url, 'PATCH', { ...alice, 'Upload-Offset': file.length, 'Content-Type': OCTET }, Buffer.from('more'));
    expect(refused.status).toBe(403);
    expect(await waitUntilSettled(server.url, uploadIdOf(url), 30_000, alice)).toMatchObject({ status: 'ready', size: file.length, sha256: sha256(file) });
  });

  it('refuses malformed Upload-Concat values with 400', async () => {
    const partial = await createPartial(alice, pdf(2000));
    const cases: [Record<string, string | number>, string][] = [
      [{ 'Upload-Concat': 'partially', 'Upload-Length': 10 }, 'must be "partial" or "final;'],
      [{ 'Upload-Concat': 'final', 'Upload-Length': 10 }, 'must be "partial" or "final;'],
      [{ 'Upload-Concat': 'final;' }, 'names no partial upload'],
      [{ 'Upload-Concat': `final;${partial}`, 'Upload-Length': 2000 }, 'send no Upload-Length'],
      [{ 'Upload-Concat': `final;${partial} ${partial}` }, 'the same partial upload twice'],
      [{ 'Upload-Concat': 'partial', 'Upload-Defer-Length': 1 }, 'needs its Upload-Length'],
    ];
    for (const [headers, reason] of cases) {
      const res = await request(`${server.url}/files/`, 'POST', { ...alice, 'Upload-Metadata': metadata('doc.pdf', 'application/pdf'), ...headers });
      expect([res.status, res.text]).toEqual([400, expect.stringContaining(reason)]);
    }
  });

  it('a final naming another owner\'s partial, an unknown one or a whole upload gets the same 400; an unfinished one of the caller\'s says so', async () => {
    const bobs = await createPartial(bob, pdf(2000));
    const own = await createPartial(alice, pdf(2000));
    const whole = await tusUpload(server.url, pdf(3000), { filename: 'whole.pdf', filetype: 'application/pdf', headers: alice });
    const unknown = `${server.url}/files/${'0'.repeat(32)}`;
    const answers = [];
    for (const url of [bobs, unknown, whole.url, `${server.url}/elsewhere`]) {
      const res = await createFinal(alice, [own, url]);
      answers.push([res.status, res.text.replace(url, '<url>')]);
    }
    expect(answers).toEqual(Array(4).fill([400, 'Upload refused: Upload-Concat names <url>, which is not a partial upload of yours\n']));

    const unfinished = await request(`${server.url}/files/`, 'POST', { ...alice, 'Upload-Concat': 'partial', 'Upload-Length': 5000 });
    const res = await createFinal(alice, [own, unfinished.headers.location!]);
    expect([res.status, res.text]).toEqual([400, expect.stringContaining('is not finished (0 of 5000 bytes)')]);
    // Bob's partial is still his to use.
    expect((await createFinal(bob, [bobs])).status).toBe(201);
  });

  it('judges the final on the first partial\'s head: a PNG declared as a PDF is 415, the final rejected and its partials removed', async () => {
    const image = png(200, 200);
    const first = await createPartial(alice, image.subarray(0, 100));
    const second = await createPartial(alice, image.subarray(100));
    const res = await createFinal(alice, [first, second]);
    expect(res.status).toBe(415);
    expect(res.text).toContain('first bytes are image/png');
    for (const partial of [first, second]) expect((await request(partial, 'HEAD', alice)).status).toBe(404);
  });

  it('cleanup removes partials left unused past UPLOAD_EXPIRES_AFTER, finished or not, and keeps younger ones', async () => {
    const finished = await createPartial(alice, pdf(2000));
    const unfinished = (await request(`${server.url}/files/`, 'POST', { ...alice, 'Upload-Concat': 'partial', 'Upload-Length': 5000 })).headers.location!;
    expect(await cleanUpExpired(server.services.context)).toMatchObject({ parts: 0 });
    expect((await request(finished, 'HEAD', alice)).status).toBe(200);
    const result = await cleanUpExpired(server.services.context, { now: new Date(Date.now() + 25 * 3600_000) });
    expect(result.parts).toBeGreaterThanOrEqual(2);
    for (const partial of [finished, unfinished]) expect((await request(partial, 'HEAD', alice)).status).toBe(404);
    if (setup === 'embedded') await expect(fs.stat(path.join(environment.dataDir, 'uploads', uploadIdOf(finished)))).rejects.toThrow();
  });

  it('counts a parallel upload as one upload in flight (QUOTA_UPLOADS_IN_FLIGHT=1)', { timeout: 60_000 }, async () => {
    const quoted = await startTestServer(environment, { QUOTA_UPLOADS_IN_FLIGHT: '1' });
    try {
      const carol = bearer(await mintToken('carol'));
      const file = pdf(400 * 1024);
      const { url } = await tusUpload(quoted.url, file, { filename: 'c.pdf', filetype: 'application/pdf', headers: carol, parallelUploads: 4 });
      expect(await waitUntilSettled(quoted.url, uploadIdOf(url), 30_000, carol)).toMatchObject({ status: 'ready', sha256: sha256(file) });
      // An unfinished plain upload fills the quota: now a parallel upload's first partial is refused.
      const open = await request(`${quoted.url}/files/`, 'POST', { ...carol, 'Upload-Length': 1000, 'Upload-Metadata': metadata('o.pdf', 'application/pdf') });
      expect(open.status).toBe(201);
      const refusal = await tusRefusal(tusUpload(quoted.url, file, { filename: 'd.pdf', filetype: 'application/pdf', headers: carol, parallelUploads: 4 }));
      expect(refusal.status).toBe(403);
    } finally {
      await quoted.close();
    }
  });
});
