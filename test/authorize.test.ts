import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningServer } from '../server/main/start.ts';
import { png } from './support/samples.ts';
import { createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { bearer, mintToken, testAuthSecret } from './support/tokens.ts';
import { fetchStatus, tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';

/**
 * The app's own check (AUTHORIZE_URL): a small app in the test answers each creation as a test
 * tells it to, and every request it gets must verify with the standardwebhooks library.
 */

const webhookSecret = `whsec_${randomBytes(24).toString('base64')}`;
const authorizeTimeoutMs = 500;

interface AppRequest {
  body: string;
  headers: Record<string, string>;
}

/** How the app answers the next requests. */
type Answer = (res: http.ServerResponse) => void | Promise<void>;

const json = (status: number, body: unknown): Answer => (res) => {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
};

/** The app at AUTHORIZE_URL: records every request and answers with `answer`. */
async function startAuthorizeApp() {
  const app = {
    requests: [] as AppRequest[],
    answer: ((res) => void res.writeHead(204).end()) as Answer,
    url: '',
  };
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    app.requests.push({ body: Buffer.concat(chunks).toString(), headers: req.headers as Record<string, string> });
    await app.answer(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  app.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/authorize`;
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return { app, close };
}

/** `Upload-Metadata` from plain values. */
function uploadMetadata(fields: Record<string, string>): string {
  return Object.entries(fields)
    .map(([key, value]) => `${key} ${Buffer.from(value).toString('base64')}`)
    .join(',');
}

/** A raw tus creation, so the refusal's status and body are seen as sent. */
function create(base: string, token: string, length: number | 'deferred', fields: Record<string, string>) {
  return fetch(`${base}/files/`, {
    method: 'POST',
    headers: {
      'Tus-Resumable': '1.0.0',
      ...(length === 'deferred' ? { 'Upload-Defer-Length': '1' } : { 'Upload-Length': String(length) }),
      'Upload-Metadata': uploadMetadata(fields),
      ...bearer(token),
    },
  });
}

async function listOwn(base: string, token: string): Promise<unknown[]> {
  const res = await fetch(`${base}/api/uploads`, { headers: bearer(token) });
  expect(res.status).toBe(200);
  return ((await res.json()) as { items: unknown[] }).items;
}

const image = png();
const settings = (url: string) => ({ AUTH_SECRET: testAuthSecret, AUTHORIZE_URL: url, WEBHOOK_SECRET: webhookSecret, AUTHORIZE_TIMEOUT: `${authorizeTimeoutMs}ms` });

describe('AUTHORIZE_URL', () => {
  let environment: TestEnvironment;
  let server: RunningServer;
  let authorize: Awaited<ReturnType<typeof startAuthorizeApp>>;
  const app = () => authorize.app;

  beforeAll(async () => {
    authorize = await startAuthorizeApp();
    environment = await createTestEnvironment('embedded', settings(authorize.app.url));
    server = await startTestServer(environment);
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    await authorize?.close();
    await environment?.destroy();
  });

  beforeEach(() => {
    app().requests.length = 0;
    app().answer = (res) => void res.writeHead(204).end();
  });

  it('asks the app with a signed request carrying owner, filename, type, size, metadata and ip; a 2xx allows', async () => {
    const token = await mintToken('alice');
    const { url } = await tusUpload(server.url, image, { filename: 'cat.png', filetype: 'image/png', metadata: { albumId: 'a1' }, headers: bearer(token) });

    expect(app().requests).toHaveLength(1);
    const [request] = app().requests;
    expect(request!.headers['webhook-id']).toBeTruthy();
    expect(request!.headers['content-type']).toBe('application/json');
    expect(new Webhook(webhookSecret).verify(request!.body, request!.headers)).toEqual({
      owner: 'alice',
      filename: 'cat.png',
      type: 'image/png',
      size: image.length,
      metadata: { albumId: 'a1' },
      ip: '127.0.0.1',
    });
    const status = await waitUntilSettled(server.url, uploadIdOf(url), 30_000, bearer(token));
    expect(status).toMatchObject({ status: 'ready', owner: 'alice', filename: 'cat.png' });
  });

  it('signs for real: a tampered body, signature or secret does not verify', async () => {
    await tusUpload(server.url, image, { filename: 'cat.png', filetype: 'image/png', headers: bearer(await mintToken('alice')) });
    const { body, headers } = app().requests[0]!;
    const verifier = new Webhook(webhookSecret);
    expect(() => verifier.verify(body.replace('"alice"', '"mallory"'), headers)).toThrow(WebhookVerificationError);
    const signature = headers['webhook-signature']!;
    const flipped = `${signature.slice(0, -2)}${signature.at(-2) === 'A' ? 'B' : 'A'}${signature.at(-1)}`;
    expect(() => verifier.verify(body, { ...headers, 'webhook-signature': flipped })).toThrow(WebhookVerificationError);
    expect(() => new Webhook(`whsec_${randomBytes(24).toString('base64')}`).verify(body, headers)).toThrow(WebhookVerificationError);
  });

  it("refuses with the app's 4xx status and message, and records nothing", async () => {
    const token = await mintToken('bob');
    app().answer = json(403, { message: 'albums are full' });
    const res = await create(server.url, token, image.length, { filename: 'cat.png', filetype: 'image/png' });
    expect(res.status).toBe(403);
    expect(await res.text()).toBe('Upload refused: albums are full\n');
    expect(await listOwn(server.url, token)).toEqual([]);
  });

  it('refuses with a fallback text when the 4xx has no message', async () => {
    app().answer = (res) => void res.writeHead(422, { 'content-type': 'text/plain' }).end('nope');
    const res = await create(server.url, await mintToken('bob'), image.length, { filename: 'cat.png', filetype: 'image/png' });
    expect(res.status).toBe(422);
    expect(await res.text()).toBe('Upload refused: the app refused this upload\n');
  });

  it('replaces the metadata: the record, the status and the store hold the app’s version', async () => {
    const token = await mintToken('carol');
    app().answer = json(200, { metadata: { filename: 'renamed.png', albumId: 'a2' } });
    const { url } = await tusUpload(server.url, image, {
      filename: 'IMG_0001.png',
      filetype: 'image/png',
      metadata: { albumId: 'from-the-client', note: 'dropped' },
      headers: bearer(token),
    });
    const id = uploadIdOf(url);
    const record = await server.services.context.db.selectFrom('uploads').select(['tus_metadata', 'filename']).where('id', '=', id).executeTakeFirstOrThrow();
    expect(record).toEqual({ filename: 'renamed.png', tus_metadata: { filename: 'renamed.png', filetype: 'image/png', albumId: 'a2' } });
    // The status JSON's metadata is the app's version: the client's own keys it dropped are gone.
    expect(await fetchStatus(server.url, id, bearer(token))).toMatchObject({ filename: 'renamed.png', metadata: { albumId: 'a2' } });
    const head = await fetch(url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0', ...bearer(token) } });
    expect(head.headers.get('upload-metadata')?.split(',').sort()).toEqual(uploadMetadata({ filename: 'renamed.png', filetype: 'image/png', albumId: 'a2' }).split(',').sort());
  });

  it("holds the app's replaced filetype to the type policy", async () => {
    const token = await mintToken('dave');
    app().answer = json(200, { metadata: { filetype: 'application/x-msdownload' } });
    const res = await create(server.url, token, image.length, { filename: 'cat', filetype: 'image/png' });
    expect(res.status).toBe(415);
    expect(await res.text()).toContain('type application/x-msdownload is not allowed');
    expect(await listOwn(server.url, token)).toEqual([]);
  });

  it("narrows the size with the app's max_size, at creation and for a deferred length", async () => {
    const token = await mintToken('erin');
    app().answer = json(200, { max_size: 1000 });
    const tooLarge = await create(server.url, token, 5000, { filename: 'cat.png', filetype: 'image/png' });
    expect(tooLarge.status).toBe(413);
    expect(await tooLarge.text()).toContain('over the 1000-byte limit the app set for this upload');

    const deferred = await create(server.url, token, 'deferred', { filename: 'cat.png', filetype: 'image/png' });
    expect(deferred.status).toBe(201);
    const patch = await fetch(deferred.headers.get('location')!, {
      method: 'PATCH',
      headers: { 'Tus-Resumable': '1.0.0', 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '0', 'Upload-Length': '2000', ...bearer(token) },
      body: new Uint8Array(2000),
    });
    expect(patch.status).toBe(413);
  });

  it('never widens the size limit of the token', async () => {
    const token = await mintToken('erin', { claims: { max_size: 500 } });
    app().answer = json(200, { max_size: 1_000_000 });
    const res = await create(server.url, token, 'deferred', { filename: 'cat.png', filetype: 'image/png' });
    expect(res.status).toBe(201);
    const id = res.headers.get('location')!.split('/').pop()!;
    const record = await server.services.context.db.selectFrom('uploads').select('limits').where('id', '=', id).executeTakeFirstOrThrow();
    expect(record.limits.maxSize).toBe(500);
  });

  it('answers 503 when the app is slower than AUTHORIZE_TIMEOUT, and records nothing', async () => {
    const token = await mintToken('frank');
    // The app answers only once the client has its 503: only the timeout can have given it.
    let answerNow = () => {};
    const released = new Promise<void>((resolve) => (answerNow = resolve));
    app().answer = async (res) => {
      await released;
      res.writeHead(204).end();
    };
    const res = await create(server.url, token, image.length, { filename: 'cat.png', filetype: 'image/png' });
    answerNow();
    expect(res.status).toBe(503);
    expect(await res.text()).toBe('Upload refused: the app that authorizes uploads did not answer; try again later\n');
    expect(await listOwn(server.url, token)).toEqual([]);
  });

  it.each([
    ['a 5xx', (res: http.ServerResponse) => void res.writeHead(500).end('boom')],
    ['a 2xx that is not JSON', (res: http.ServerResponse) => void res.writeHead(200, { 'content-type': 'text/html' }).end('<html>ok</html>')],
    ['a 2xx with metadata that is not strings', json(200, { metadata: { albumId: 7 } })],
    // What a client may not send in Upload-Metadata, an app may not give back either.
    ['a 2xx with metadata of more than 32 keys', json(200, { metadata: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])) })],
    ['a 2xx with metadata over 4 KiB', json(200, { metadata: { note: 'x'.repeat(4000) } })],
    ['a redirect', (res: http.ServerResponse) => void res.writeHead(307, { location: 'http://127.0.0.1:1/' }).end()],
  ])('answers 503 when the app answers %s', async (_name, answer) => {
    const token = await mintToken('grace');
    app().answer = answer;
    const res = await create(server.url, token, image.length, { filename: 'cat.png', filetype: 'image/png' });
    expect(res.status).toBe(503);
    expect(await listOwn(server.url, token)).toEqual([]);
  });
});

describe('AUTHORIZE_URL of an app that is down', () => {
  let environment: TestEnvironment;
  let server: RunningServer;

  beforeAll(async () => {
    // A port that was just free and is closed again: the connection is refused.
    const closed = await startAuthorizeApp();
    await closed.close();
    environment = await createTestEnvironment('embedded', settings(closed.app.url));
    server = await startTestServer(environment);
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
  });

  it('answers 503: never allowed by default', async () => {
    const token = await mintToken('heidi');
    const res = await create(server.url, token, image.length, { filename: 'cat.png', filetype: 'image/png' });
    expect(res.status).toBe(503);
    expect(await res.text()).toContain('did not answer');
    expect(await listOwn(server.url, token)).toEqual([]);
  });
});
