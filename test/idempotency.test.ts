import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeleteBucketCommand } from '@aws-sdk/client-s3';
import { cleanUpExpired } from '../server/jobs/cleanup.ts';
import type { RunningServer } from '../server/main/start.ts';
import { createTestBucket, testS3Client } from './services/env.ts';
import { draftRequest } from './support/draftRequests.ts';
import { pdf, sha256 } from './support/samples.ts';
import { createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { bearer, mintToken, testAuthSecret } from './support/tokens.ts';
import { request } from './support/tusRequests.ts';
import { tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';

const OCTET = 'application/offset+octet-stream';
const metadata = (filename: string, type = 'application/pdf') => `filename ${Buffer.from(filename).toString('base64')},filetype ${Buffer.from(type).toString('base64')}`;
const quoted = (key: string) => `"${key}"`;

/** Idempotency-Key on every creation, against real Postgres and radosgw, two server instances sharing them. */
describe('Idempotency-Key on creations (scaleout, two instances)', () => {
  let environment: TestEnvironment;
  let a: RunningServer;
  let b: RunningServer;
  let alice: Record<string, string>;
  let bob: Record<string, string>;
  let database: pg.Client;

  beforeAll(async () => {
    environment = await createTestEnvironment('scaleout', { AUTH_SECRET: testAuthSecret, RATE_LIMIT_UPLOADS: '0', QUOTA_UPLOADS_IN_FLIGHT: '0', SCAN: 'off', CORS_ORIGINS: 'http://app.test' });
    [a, b] = await Promise.all([startTestServer(environment), startTestServer(environment)]);
    alice = bearer(await mintToken('alice'));
    bob = bearer(await mintToken('bob'));
    database = new pg.Client({ connectionString: environment.env.DATABASE_URL });
    await database.connect();
  });
  afterAll(async () => {
    await database?.end();
    await Promise.all([a?.close(), b?.close()]);
    await environment?.destroy();
  });

  const uploadsOf = async (owner: string) =>
    (await database.query<{ id: string; status: string }>('select id, status from uploads where owner = $1', [owner])).rows;
  const post = (server: RunningServer, headers: Record<string, string | number>, body?: Buffer) =>
    request(`${server.url}/files/`, 'POST', { ...alice, ...headers, ...(body ? { 'Content-Type': OCTET } : {}) }, body);

  /** How many of alice's uploads are named `filename`. */
  const uploadsNamed = async (filename: string) =>
    (await database.query<{ n: number }>("select count(*)::int as n from uploads where owner = 'alice' and safe_filename = $1", [filename])).rows[0]!.n;
  /** `file` as two finished partial uploads of alice's (sent with `more`); the Upload-Concat of their final. */
  const partialsOf = async (file: Buffer, more: Record<string, string> = {}) => {
    const half = file.length / 2;
    const paths: string[] = [];
    for (const piece of [file.subarray(0, half), file.subarray(half)]) {
      const created = await post(a, { 'Upload-Length': piece.length, 'Upload-Concat': 'partial', ...more }, piece);
      expect(created.status, created.text).toBe(201);
      paths.push(new URL(created.headers.location!).pathname);
    }
    return `final;${paths.join(' ')}`;
  };

  it('a tus POST retried with its key gets the same upload (201, same Location), on either instance; one upload is made', async () => {
    const key = randomUUID();
    const headers = { 'Upload-Length': 1000, 'Upload-Metadata': metadata('a.pdf'), 'Idempotency-Key': quoted(key) };
    const first = await post(a, headers);
    expect(first.status, first.text).toBe(201);
    const again = await post(a, headers);
    expect(again.status, again.text).toBe(201);
    expect(again.headers.location).toBe(first.headers.location);
    expect(again.headers['upload-offset']).toBe('0');
    // The other instance knows the key too: the same upload, at its own address.
    const elsewhere = await post(b, headers);
    expect(elsewhere.status, elsewhere.text).toBe(201);
    expect(uploadIdOf(elsewhere.headers.location!)).toBe(uploadIdOf(first.headers.location!));
    expect(elsewhere.headers.location).toBe(`${b.url}/files/${uploadIdOf(first.headers.location!)}`);
    // A bare token names the same key as the quoted string; a page on an allowed origin can read the answer.
    const bare = await post(a, { ...headers, 'Idempotency-Key': key, Origin: 'http://app.test' });
    expect(bare.headers.location).toBe(first.headers.location);
    expect(bare.headers['access-control-allow-origin']).toBe('http://app.test');
    expect(bare.headers['access-control-expose-headers']).toMatch(/Location/);
    expect(bare.headers['access-control-expose-headers']).toMatch(/Upload-Offset/);
    expect((await uploadsOf('alice')).filter((u) => u.id === uploadIdOf(first.headers.location!))).toHaveLength(1);
    const keys = await database.query('select upload_id from idempotency_keys where owner = $1 and key = $2', ['alice', key]);
    expect(keys.rows).toEqual([{ upload_id: uploadIdOf(first.headers.location!) }]);
  });

  it('a retried creation-with-upload answers the same Location and the offset stored; its body is not appended twice', async () => {
    const file = pdf(64 * 1024);
    const half = 40 * 1024;
    const headers = { 'Upload-Length': file.length, 'Upload-Metadata': metadata('half.pdf'), 'Idempotency-Key': quoted(randomUUID()) };
    const first = await post(a, headers, file.subarray(0, half));
    expect(first.status, first.text).toBe(201);
    expect(first.headers['upload-offset']).toBe(String(half));
    // The answer was lost; the client sends the same request again, to the other instance.
    const retried = await post(b, headers, file.subarray(0, half));
    expect(retried.status, retried.text).toBe(201);
    expect(uploadIdOf(retried.headers.location!)).toBe(uploadIdOf(first.headers.location!));
    expect(retried.headers['upload-offset']).toBe(String(half));
    const head = await request(first.headers.location!, 'HEAD', alice);
    expect(head.headers['upload-offset']).toBe(String(half));
    const rest = await request(first.headers.location!, 'PATCH', { ...alice, 'Upload-Offset': half, 'Content-Type': OCTET }, file.subarray(half));
    expect(rest.status, rest.text).toBe(204);
    const status = await waitUntilSettled(a.url, uploadIdOf(first.headers.location!), 30_000, alice);
    expect(status).toMatchObject({ status: 'ready', size: file.length, sha256: sha256(file) });
  });

  it('the same key with another length or other metadata is 422 with a problem body; nothing is made', async () => {
    const key = quoted(randomUUID());
    const first = await post(a, { 'Upload-Length': 500, 'Upload-Metadata': metadata('x.pdf'), 'Idempotency-Key': key });
    expect(first.status).toBe(201);
    const before = (await uploadsOf('alice')).length;
    const changes: Record<string, string | number>[] = [
      { 'Upload-Length': 501, 'Upload-Metadata': metadata('x.pdf') },
      { 'Upload-Length': 500, 'Upload-Metadata': metadata('y.pdf') },
      { 'Upload-Defer-Length': 1, 'Upload-Metadata': metadata('x.pdf') },
    ];
    for (const changed of changes) {
      const answer = await post(b, { ...changed, 'Idempotency-Key': key });
      expect(answer.status, answer.text).toBe(422);
      expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(answer.text)).toMatchObject({ status: 422, title: 'Idempotency-Key is already used', detail: expect.stringContaining('different creation') });
    }
    expect((await uploadsOf('alice')).length).toBe(before);
  });

  it("another owner's key never matches: the same key from bob makes bob's own upload", async () => {
    const headers = { 'Upload-Length': 300, 'Upload-Metadata': metadata('same.pdf'), 'Idempotency-Key': quoted(randomUUID()) };
    const mine = await post(a, headers);
    const theirs = await request(`${a.url}/files/`, 'POST', { ...headers, ...bob });
    expect(theirs.status, theirs.text).toBe(201);
    expect(uploadIdOf(theirs.headers.location!)).not.toBe(uploadIdOf(mine.headers.location!));
    const bobsAgain = await request(`${b.url}/files/`, 'POST', { ...headers, ...bob });
    expect(uploadIdOf(bobsAgain.headers.location!)).toBe(uploadIdOf(theirs.headers.location!));
  });

  it("a page's preflight may send Idempotency-Key", async () => {
    const preflight = await request(`${a.url}/files/`, 'OPTIONS', { Origin: 'http://app.test', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'idempotency-key,upload-length' });
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-headers']).toMatch(/Idempotency-Key/i);
  });

  it('a malformed key is a 400 problem, and makes nothing', async () => {
    const before = (await uploadsOf('alice')).length;
    for (const bad of ['"unterminated', '"a" , "b"', '', '"é"', `"${'k'.repeat(256)}"`, 'two words', '"\\x"']) {
      const answer = await post(a, { 'Upload-Length': 10, 'Upload-Metadata': metadata('bad.pdf'), 'Idempotency-Key': bad });
      expect(answer.status, `${bad}: ${answer.text}`).toBe(400);
      expect(JSON.parse(answer.text)).toMatchObject({ status: 400, title: 'Idempotency-Key is malformed' });
    }
    expect((await uploadsOf('alice')).length).toBe(before);
  });

  it('concurrent creations with one key, on both instances: one upload; every answer is that upload or 409', async () => {
    const headers = { 'Upload-Length': 2000, 'Upload-Metadata': metadata('race.pdf'), 'Idempotency-Key': quoted(randomUUID()) };
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => post(i % 2 ? a : b, headers)));
    const made = answers.filter((answer) => answer.status === 201).map((answer) => uploadIdOf(answer.headers.location!));
    expect(made.length).toBeGreaterThan(0);
    expect(new Set(made).size).toBe(1);
    for (const answer of answers.filter((answer) => answer.status !== 201)) {
      expect(answer.status, answer.text).toBe(409);
      expect(JSON.parse(answer.text)).toMatchObject({ status: 409 });
    }
    const made1 = await database.query('select count(*)::int as n from idempotency_keys k join uploads u on u.id = k.upload_id where k.key = $1', [JSON.parse(headers['Idempotency-Key'])]);
    expect(made1.rows[0].n).toBe(1);
    expect(await uploadsNamed('race.pdf')).toBe(1);
  });

  it('tus-js-client with the key in `headers`: uploading the same file twice (no stored URL) gives one upload, ready', async () => {
    const file = pdf(200 * 1024);
    const headers = { ...alice, 'Idempotency-Key': quoted(randomUUID()) };
    const first = await tusUpload(a.url, file, { filename: 'twice.pdf', filetype: 'application/pdf', headers, retryDelays: [0, 100, 200] });
    const second = await tusUpload(b.url, file, { filename: 'twice.pdf', filetype: 'application/pdf', headers, retryDelays: [0, 100, 200] });
    expect(uploadIdOf(second.url)).toBe(uploadIdOf(first.url));
    const status = await waitUntilSettled(a.url, uploadIdOf(first.url), 30_000, alice);
    expect(status).toMatchObject({ status: 'ready', sha256: sha256(file) });
    expect(await uploadsNamed('twice.pdf')).toBe(1);
  });

  it('a concatenation final retried with its key gets the same final; its parts are not refused as taken; one final is made', async () => {
    const file = pdf(100 * 1024);
    // tus-js-client sends the same headers with every part: the parts ignore the key.
    const concat = await partialsOf(file, { 'Idempotency-Key': quoted('shared-by-parts') });
    const headers = { 'Upload-Concat': concat, 'Upload-Metadata': metadata('joined.pdf'), 'Idempotency-Key': quoted(randomUUID()) };
    const final = await post(a, headers);
    expect(final.status, final.text).toBe(201);
    const retried = await post(b, headers);
    expect(retried.status, retried.text).toBe(201);
    expect(uploadIdOf(retried.headers.location!)).toBe(uploadIdOf(final.headers.location!));
    const status = await waitUntilSettled(a.url, uploadIdOf(final.headers.location!), 30_000, alice);
    expect(status).toMatchObject({ status: 'ready', size: file.length, sha256: sha256(file) });
    expect(await uploadsNamed('joined.pdf')).toBe(1);
  });

  it('two finals with one key at once, on both instances: one final is made and assembled; the other answer is it or 409', async () => {
    const file = pdf(80 * 1024);
    const headers = { 'Upload-Concat': await partialsOf(file), 'Upload-Metadata': metadata('raced.pdf'), 'Idempotency-Key': quoted(randomUUID()) };
    const answers = await Promise.all([post(a, headers), post(b, headers)]);
    const made = answers.filter((answer) => answer.status === 201).map((answer) => uploadIdOf(answer.headers.location!));
    expect(made.length, answers.map((answer) => `${answer.status} ${answer.text}`).join('; ')).toBeGreaterThan(0);
    expect(new Set(made).size).toBe(1);
    for (const answer of answers.filter((answer) => answer.status !== 201)) expect(answer.status, answer.text).toBe(409);
    // Retried once the first answered: the same final.
    const retried = await post(b, headers);
    expect(uploadIdOf(retried.headers.location!)).toBe(made[0]);
    const status = await waitUntilSettled(a.url, made[0]!, 30_000, alice);
    expect(status).toMatchObject({ status: 'ready', size: file.length, sha256: sha256(file) });
    expect(await uploadsNamed('raced.pdf')).toBe(1);
  });

  it("the IETF draft's creation retried with its key gets the same Location, complete at its length", async () => {
    const file = pdf(30 * 1024);
    const headers = { ...alice, 'Upload-Draft-Interop-Version': 8, 'Upload-Complete': '?1', 'Content-Disposition': 'attachment; filename="draft.pdf"', 'Idempotency-Key': quoted(randomUUID()) };
    const first = await draftRequest(`${a.url}/files/`, 'POST', headers, file);
    expect(first.status, first.text).toBe(201);
    const again = await draftRequest(`${b.url}/files/`, 'POST', headers, file);
    expect(again.status, again.text).toBe(201);
    expect(uploadIdOf(again.headers.location!)).toBe(uploadIdOf(first.headers.location!));
    expect(again.headers['upload-complete']).toBe('?1');
    expect(again.headers['upload-draft-interop-version']).toBe('8');
    const other = await draftRequest(`${b.url}/files/`, 'POST', headers, file.subarray(1));
    expect(other.status, other.text).toBe(422);
    const status = await waitUntilSettled(a.url, uploadIdOf(first.headers.location!), 30_000, alice);
    expect(status).toMatchObject({ status: 'ready', sha256: sha256(file) });
  });

  it('a key whose upload was deleted, or past IDEMPOTENCY_TTL, makes a new upload; cleanup forgets expired keys', async () => {
    const key = quoted(randomUUID());
    const headers = { 'Upload-Length': 100, 'Upload-Metadata': metadata('gone.pdf'), 'Idempotency-Key': key };
    const first = await post(a, headers);
    const deleted = await fetch(`${a.url}/api/uploads/${uploadIdOf(first.headers.location!)}`, { method: 'DELETE', headers: alice });
    expect(deleted.ok).toBe(true);
    const second = await post(b, headers);
    expect(second.status, second.text).toBe(201);
    expect(uploadIdOf(second.headers.location!)).not.toBe(uploadIdOf(first.headers.location!));

    // Past IDEMPOTENCY_TTL (the database's clock moved on, as far as the key can tell): the same key makes a new upload.
    const brief = await startTestServer(environment, { IDEMPOTENCY_TTL: '2h' });
    try {
      const shortKey = randomUUID();
      const made = await request(`${brief.url}/files/`, 'POST', { ...alice, ...headers, 'Idempotency-Key': quoted(shortKey) });
      expect(made.status, made.text).toBe(201);
      const lifetime = await database.query<{ seconds: number }>('select extract(epoch from expires_at - created_at)::int as seconds from idempotency_keys where key = $1', [shortKey]);
      expect(lifetime.rows).toEqual([{ seconds: 2 * 3600 }]);
      await database.query("update idempotency_keys set expires_at = now() - interval '1 second' where key = $1", [shortKey]);
      const anew = await request(`${brief.url}/files/`, 'POST', { ...alice, ...headers, 'Idempotency-Key': quoted(shortKey) });
      expect(anew.status, anew.text).toBe(201);
      expect(uploadIdOf(anew.headers.location!)).not.toBe(uploadIdOf(made.headers.location!));
      // The key now names the new upload; once past its time, cleanup forgets it.
      await database.query("update idempotency_keys set expires_at = now() - interval '1 second' where key = $1", [shortKey]);
      await cleanUpExpired(brief.services.context);
      expect((await database.query('select 1 from idempotency_keys where expires_at <= now()')).rowCount).toBe(0);
      expect((await database.query('select 1 from idempotency_keys where key = $1', [shortKey])).rowCount).toBe(0);
    } finally {
      await brief.close();
    }
  });

  it('a creation that failed after its record (the store refused: 5xx) is not remembered: the retry makes a new upload', async () => {
    // An instance whose bucket is removed once it runs: the record is written, then the store refuses.
    const bucket = await createTestBucket();
    const broken = await startTestServer(environment, { S3_BUCKET: bucket });
    try {
      const s3 = testS3Client();
      await s3.send(new DeleteBucketCommand({ Bucket: bucket })).finally(() => s3.destroy());
      const key = randomUUID();
      const headers = { 'Upload-Length': 100, 'Upload-Metadata': metadata('retry-after-5xx.pdf'), 'Idempotency-Key': quoted(key) };
      const failed = await request(`${broken.url}/files/`, 'POST', { ...alice, ...headers });
      expect(failed.status, failed.text).toBeGreaterThanOrEqual(500);
      const recorded = await database.query<{ id: string }>("select id from uploads where owner = 'alice' and safe_filename = 'retry-after-5xx.pdf'");
      expect(recorded.rows).toHaveLength(1);
      expect((await database.query('select 1 from idempotency_keys where key = $1', [key])).rowCount).toBe(0);
      const retried = await post(a, headers);
      expect(retried.status, retried.text).toBe(201);
      expect(uploadIdOf(retried.headers.location!)).not.toBe(recorded.rows[0]!.id);
      const again = await post(b, headers);
      expect(uploadIdOf(again.headers.location!)).toBe(uploadIdOf(retried.headers.location!));
    } finally {
      await broken.close();
    }
  });

  it('any Idempotency-Key value a client can send (fast-check, over HTTP): a 400 problem, or on to the creation; never a 5xx', { timeout: 120_000 }, async () => {
    const fuzz = bearer(await mintToken('fuzz'));
    // What an HTTP header value may carry: tab, visible ASCII and space, obs-text.
    const headerChar = fc.oneof(fc.constantFrom('"', '\\', ';', ',', ' ', '\t', '=', '(', ')'), fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c)));
    const value = fc.oneof(fc.string({ unit: headerChar, maxLength: 300 }), fc.uuid().map(quoted), fc.uuid());
    // An empty upload: a well-formed key passes on to the creation, which refuses it (400 in plain text) before anything is stored.
    await fc.assert(
      fc.asyncProperty(value, async (key) => {
        const answer = await request(`${a.url}/files/`, 'POST', { ...fuzz, 'Upload-Length': 0, 'Upload-Metadata': metadata('fuzz.pdf'), 'Idempotency-Key': key });
        expect(answer.status, `${JSON.stringify(key)}: ${answer.text}`).toBe(400);
        const malformed = answer.headers['content-type']?.startsWith('application/problem+json');
        if (malformed) expect(JSON.parse(answer.text)).toMatchObject({ status: 400, title: 'Idempotency-Key is malformed' });
        else expect(answer.text).toMatch(/^Upload refused: the file is empty/);
      }),
      { numRuns: 500 },
    );
    expect((await database.query("select 1 from idempotency_keys where owner = 'fuzz'")).rowCount).toBe(0);
  });
});

/** The embedded default, running open (no owners): the key holds for nobody in particular too. */
describe('Idempotency-Key on the embedded default, open', () => {
  let environment: TestEnvironment;
  let server: RunningServer;

  beforeAll(async () => {
    environment = await createTestEnvironment('embedded', { SCAN: 'off' });
    server = await startTestServer(environment);
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
  });

  it('a retried creation-with-upload without a token gets the same upload; another key makes another', async () => {
    const file = pdf(20 * 1024);
    const headers = { 'Upload-Length': file.length, 'Upload-Metadata': metadata('open.pdf'), 'Content-Type': OCTET, 'Idempotency-Key': randomUUID() };
    const first = await request(`${server.url}/files/`, 'POST', headers, file);
    expect(first.status, first.text).toBe(201);
    const again = await request(`${server.url}/files/`, 'POST', headers, file);
    expect(again.status, again.text).toBe(201);
    expect(again.headers.location).toBe(first.headers.location);
    expect(again.headers['upload-offset']).toBe(String(file.length));
    const other = await request(`${server.url}/files/`, 'POST', { ...headers, 'Idempotency-Key': randomUUID() }, file);
    expect(other.headers.location).not.toBe(first.headers.location);
    const status = await waitUntilSettled(server.url, uploadIdOf(first.headers.location!), 30_000);
    expect(status).toMatchObject({ status: 'ready', size: file.length, sha256: sha256(file), owner: null });
  });
});
