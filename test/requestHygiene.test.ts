import net from 'node:net';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sanitizeFilename } from '../hooks/sanitizeFilename.ts';
import type { RunningServer } from '../server/main/start.ts';
import { pdf } from './support/samples.ts';
import { createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { eventually } from './support/eventually.ts';
import { bearer, mintToken, testAuthSecret } from './support/tokens.ts';
import { fetchStatus, tusUpload, uploadIdOf } from './support/uploads.ts';

/**
 * Request hygiene: deliberate timeouts and bounds on the HTTP server, limits on what a request
 * may carry, /metrics behind its token, CORS on every answer, and hostile requests answered 4xx.
 * Raw sockets where a client library would fix or refuse what is sent.
 */

const V = '1.0.0';
const OCTETS = 'application/offset+octet-stream';
const metricsToken = 'metrics-token-for-the-scraper';

/** A server of its own environment (each embedded database is one process's). */
function serverFor(overrides: Record<string, string>) {
  const running: { environment?: TestEnvironment; server?: RunningServer } = {};
  beforeAll(async () => {
    running.environment = await createTestEnvironment('embedded', overrides);
    running.server = await startTestServer(running.environment);
  });
  afterAll(async () => {
    await running.server?.close();
    await running.environment?.destroy();
  });
  return {
    get url() {
      return running.server!.url;
    },
    get port() {
      return Number(new URL(running.server!.url).port);
    },
  };
}

const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Sends `bytes` as they are on a fresh connection; resolves with the status and what arrived once the server closes it (a hang fails, not a slow answer). */
function rawRequest(port: number, bytes: string | Buffer, timeoutMs = 60_000): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms to ${JSON.stringify(bytes.toString().slice(0, 80))}`));
    }, timeoutMs);
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text });
    });
    socket.write(bytes);
  });
}

/** Resolves with how long after now the server closed `socket`. */
function closedAfter(socket: net.Socket): Promise<number> {
  const started = Date.now();
  return new Promise((resolve) => socket.once('close', () => resolve(Date.now() - started)));
}

async function healthzMs(base: string): Promise<number> {
  const started = performance.now();
  const res = await fetch(`${base}/healthz`);
  expect(res.status).toBe(200);
  await res.arrayBuffer();
  return performance.now() - started;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

function exposedHeadersOf(res: Response): string[] {
  return (res.headers.get('access-control-expose-headers') ?? '').split(',').map((h) => h.trim().toLowerCase()).filter(Boolean);
}

describe('request hygiene: timeouts, bounds, metrics token (open server)', () => {
  const server = serverFor({
    HEADERS_TIMEOUT: '2s',
    REQUEST_TIMEOUT: '1s',
    PATCH_IDLE_TIMEOUT: '1s',
    MAX_HEADER_SIZE: '8KiB',
    METRICS_TOKEN: metricsToken,
  });

  it('answers /healthz at once while 100 connections trickle their headers, and closes those after HEADERS_TIMEOUT', async () => {
    await healthzMs(server.url);
    const baseline = median(await Promise.all(Array.from({ length: 9 }, () => healthzMs(server.url))));

    const sockets = Array.from({ length: 100 }, () => net.connect(server.port, '127.0.0.1').on('error', () => undefined));
    const closed = sockets.map(closedAfter);
    for (const socket of sockets) socket.write('GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: ');
    // A byte every 200 ms, as a slowloris client sends, until the server hangs up.
    const trickle = setInterval(() => {
      for (const socket of sockets) if (!socket.destroyed) socket.write('a');
    }, 200);
    try {
      await sleep(500);
      const during: number[] = [];
      for (let i = 0; i < 9; i++) during.push(await healthzMs(server.url));
      // Generous: at once means within a few times the unloaded latency of the same run, never
      // waiting on the slow clients (which would take HEADERS_TIMEOUT, closedAt below).
      expect(median(during)).toBeLessThan(Math.max(baseline * 10, baseline + 100));

      // They trickle for ever: that they are closed at all is HEADERS_TIMEOUT's doing, and never before it.
      const closedAt = await Promise.all(closed);
      for (const ms of closedAt) expect(ms).toBeGreaterThanOrEqual(1_900);
    } finally {
      clearInterval(trickle);
      for (const socket of sockets) socket.destroy();
    }
    await healthzMs(server.url);
  });

  it('answers headers over MAX_HEADER_SIZE with 431, and smaller ones as usual', async () => {
    const big = await rawRequest(server.port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(10_000)}\r\nConnection: close\r\n\r\n`);
    expect(big.status).toBe(431);
    const fits = await rawRequest(server.port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(6_000)}\r\nConnection: close\r\n\r\n`);
    expect(fits.status).toBe(200);
  });

  it('closes a connection whose request (no upload bytes) has not arrived whole after REQUEST_TIMEOUT', async () => {
    const socket = net.connect(server.port, '127.0.0.1').on('error', () => undefined);
    const closed = closedAfter(socket);
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString()));
    // Node itself would wait for the other 97 bytes for ever (requestTimeout is off for uploads' sake).
    socket.write('POST /api/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a"');
    // Closed at all (the client never sends the rest) and not before REQUEST_TIMEOUT: the timeout's doing.
    const ms = await closed;
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(answer).toMatch(/^HTTP\/1\.1 4\d\d/);
  });

  it('ends a PATCH after PATCH_IDLE_TIMEOUT without a byte, keeps what arrived, and the upload resumes from there', async () => {
    const file = pdf(100_000);
    const created = await fetch(`${server.url}/files/`, {
      method: 'POST',
      headers: { 'Tus-Resumable': V, 'Upload-Length': String(file.length), 'Upload-Metadata': `filename ${b64('stall.pdf')},filetype ${b64('application/pdf')}` },
    });
    expect(created.status).toBe(201);
    const url = created.headers.get('location')!;
    const { pathname } = new URL(url);

    const socket = net.connect(server.port, '127.0.0.1').on('error', () => undefined);
    const closed = closedAfter(socket);
    socket.write(`PATCH ${pathname} HTTP/1.1\r\nHost: x\r\nTus-Resumable: ${V}\r\nContent-Type: ${OCTETS}\r\nUpload-Offset: 0\r\nContent-Length: ${file.length}\r\n\r\n`);
    socket.write(file.subarray(0, 40_000));
    // The rest never comes: closed at all, and not before PATCH_IDLE_TIMEOUT, is the timeout's doing.
    const ms = await closed;
    expect(ms).toBeGreaterThanOrEqual(900);

    await eventually('the 40000 bytes that arrived to be kept', async () => (await fetch(url, { method: 'HEAD', headers: { 'Tus-Resumable': V } })).headers.get('upload-offset') === '40000');
    const rest = await fetch(url, {
      method: 'PATCH',
      headers: { 'Tus-Resumable': V, 'Content-Type': OCTETS, 'Upload-Offset': '40000' },
      body: new Uint8Array(file.subarray(40_000)),
    });
    expect(rest.status).toBe(204);
    expect(rest.headers.get('upload-offset')).toBe(String(file.length));
  });

  it('ends a stalled creation-with-upload POST the same way, keeping what arrived', async () => {
    const file = pdf(60_000);
    const socket = net.connect(server.port, '127.0.0.1').on('error', () => undefined);
    const closed = closedAfter(socket);
    const metadata = `filename ${b64('stalled-create.pdf')},filetype ${b64('application/pdf')}`;
    socket.write(
      `POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: ${V}\r\nUpload-Length: ${file.length}\r\nUpload-Metadata: ${metadata}\r\n` +
        `Content-Type: ${OCTETS}\r\nContent-Length: ${file.length}\r\n\r\n`,
    );
    socket.write(file.subarray(0, 25_000));
    const ms = await closed;
    expect(ms).toBeGreaterThanOrEqual(900);
    // The client never got its Location; the upload is still there, resumable, with what arrived.
    const item = await eventually('the 25000 bytes that arrived to be kept', async () => {
      const list = (await (await fetch(`${server.url}/api/uploads`)).json()) as { items: { filename: string; offset: number; status: string }[] };
      return list.items.find((u) => u.filename === 'stalled-create.pdf' && u.offset === 25_000);
    });
    expect(item).toMatchObject({ offset: 25_000, status: 'uploading' });
  });

  it('refuses Upload-Metadata over 4 KiB or over 32 keys with a 400 saying which', async () => {
    const post = (metadata: string) =>
      fetch(`${server.url}/files/`, { method: 'POST', headers: { 'Tus-Resumable': V, 'Upload-Length': '1000', 'Upload-Metadata': metadata } });
    const huge = await post(`filename ${b64('a.pdf')},note ${b64('x'.repeat(3_200))}`);
    expect(huge.status).toBe(400);
    expect(await huge.text()).toMatch(/^Upload-Metadata is 4\d{3} bytes; at most 4096 are accepted/);
    expect(huge.headers.get('tus-resumable')).toBe(V);

    const keys = (n: number) => [`filename ${b64('a.pdf')}`, ...Array.from({ length: n - 1 }, (_, i) => `k${i} ${b64('v')}`)].join(',');
    const many = await post(keys(33));
    expect(many.status).toBe(400);
    expect(await many.text()).toBe('Upload-Metadata has 33 keys; at most 32 are accepted\n');
    expect((await post(keys(32))).status).toBe(201);
  });

  it('caps a 300-byte multibyte filename at 255 bytes, keeping the extension and whole characters', async () => {
    const filename = `${'写'.repeat(98)}ab.pdf`;
    expect(Buffer.byteLength(filename)).toBe(300);
    const { url } = await tusUpload(server.url, pdf(20_000), { filename, filetype: 'application/pdf' });
    const status = await fetchStatus(server.url, uploadIdOf(url));
    // 251 bytes are left before ".pdf": 83 three-byte characters; an 84th would not fit whole.
    expect(status.filename).toBe(`${'写'.repeat(83)}.pdf`);
    expect(Buffer.byteLength(status.filename)).toBeLessThanOrEqual(255);
  });

  it('never splits a character, an emoji sequence included, when capping by bytes', () => {
    const family = '👩‍👩‍👧‍👦'; // 25 bytes of UTF-8, one grapheme
    const capped = sanitizeFilename(`${family.repeat(12)}.jpeg`);
    expect(capped).toBe(`${family.repeat(10)}.jpeg`);
    expect(Buffer.byteLength(capped)).toBeLessThanOrEqual(255);
    // A long "extension" is part of the name: cut as one.
    expect(Buffer.byteLength(sanitizeFilename(`x.${'é'.repeat(200)}`))).toBeLessThanOrEqual(255);
  });

  it('answers 404 to /api/uploads ids that are not the server\'s format', async () => {
    for (const id of ['not-an-id', 'ABCDEF0123456789ABCDEF0123456789', '..%2F..%2Fetc%2Fpasswd', `${'a'.repeat(32)}x`]) {
      expect((await fetch(`${server.url}/api/uploads/${id}`)).status).toBe(404);
      expect((await fetch(`${server.url}/api/uploads/${id}/files/original`)).status).toBe(404);
      expect((await fetch(`${server.url}/api/uploads/${id}`, { method: 'DELETE' })).status).toBe(404);
    }
  });

  it('serves /metrics only to the METRICS_TOKEN when it is set', async () => {
    const none = await fetch(`${server.url}/metrics`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="metrics"');
    expect(await none.text()).toBe('a Bearer token (METRICS_TOKEN) is required\n');

    for (const authorization of [`Bearer ${metricsToken}x`, 'Bearer wrong', `Basic ${b64(`user:${metricsToken}`)}`]) {
      const wrong = await fetch(`${server.url}/metrics`, { headers: { Authorization: authorization } });
      expect(wrong.status).toBe(401);
      expect(wrong.headers.get('www-authenticate')).toBe('Bearer realm="metrics", error="invalid_token"');
    }
    const right = await fetch(`${server.url}/metrics`, { headers: bearer(metricsToken) });
    expect(right.status).toBe(200);
    expect(await right.text()).toContain('process_resident_memory_bytes');
  });

  it('lets any origin read every answer when the server runs open, refusals included', async () => {
    const refusals = [
      await fetch(`${server.url}/files/${'0'.repeat(32)}`, { method: 'HEAD', headers: { 'Tus-Resumable': V, Origin: 'https://anywhere.example' } }),
      await fetch(`${server.url}/api/uploads/nope`, { headers: { Origin: 'https://anywhere.example' } }),
      await fetch(`${server.url}/metrics`, { headers: { Origin: 'https://anywhere.example' } }),
    ];
    for (const res of refusals) {
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.headers.get('access-control-allow-origin')).toBe('*');
      expect(exposedHeadersOf(res)).toEqual(expect.arrayContaining(['www-authenticate', 'retry-after', 'upload-offset', 'location']));
    }
  });
});

describe('CORS with tokens and CORS_ORIGINS', () => {
  const origin = 'https://app.example';
  const server = serverFor({ AUTH_SECRET: testAuthSecret, CORS_ORIGINS: `${origin}, https://admin.example`, RATE_LIMIT_UPLOADS: '2' });
  const wanted = ['retry-after', 'www-authenticate', 'upload-offset', 'upload-length', 'upload-expires', 'location', 'tus-resumable', 'tus-version'];

  function expectReadableBy(res: Response, from: string) {
    expect(res.headers.get('access-control-allow-origin')).toBe(from);
    expect(res.headers.get('vary')?.toLowerCase()).toContain('origin');
    expect(exposedHeadersOf(res)).toEqual(expect.arrayContaining(wanted));
  }

  it('echoes a listed origin on a 401, with the reason readable', async () => {
    for (const from of [origin, 'https://admin.example']) {
      const tus = await fetch(`${server.url}/files/`, { method: 'POST', headers: { 'Tus-Resumable': V, 'Upload-Length': '10', Origin: from } });
      expect(tus.status).toBe(401);
      expectReadableBy(tus, from);
      const api = await fetch(`${server.url}/api/uploads`, { headers: { Origin: from } });
      expect(api.status).toBe(401);
      expectReadableBy(api, from);
    }
  });

  it('sends no Access-Control-Allow-Origin to an origin not listed', async () => {
    for (const res of [
      await fetch(`${server.url}/files/`, { method: 'POST', headers: { 'Tus-Resumable': V, 'Upload-Length': '10', Origin: 'https://evil.example' } }),
      await fetch(`${server.url}/files/`, { method: 'OPTIONS', headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' } }),
      await fetch(`${server.url}/api/uploads`, { method: 'OPTIONS', headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'GET' } }),
    ]) {
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
      expect(res.headers.get('vary')?.toLowerCase()).toContain('origin');
    }
  });

  it('makes a 429 readable: Retry-After and the reason', async () => {
    const token = await mintToken('hasty');
    const post = () => fetch(`${server.url}/files/`, { method: 'POST', headers: { 'Tus-Resumable': V, 'Upload-Length': '1000', Origin: origin, ...bearer(token) } });
    const answers = [await post(), await post(), await post()];
    const limited = answers.find((res) => res.status === 429)!;
    expect(limited).toBeDefined();
    expectReadableBy(limited, origin);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await limited.text()).toMatch(/^Too many uploads by this owner; try again in \d+ s\n$/);
  });

  it('makes a 415 readable', async () => {
    const res = await fetch(`${server.url}/files/${'0'.repeat(32)}`, {
      method: 'PATCH',
      headers: { 'Tus-Resumable': V, 'Content-Type': 'text/plain', 'Upload-Offset': '0', Origin: origin },
      body: 'hello',
    });
    expect(res.status).toBe(415);
    expectReadableBy(res, origin);
  });

  it('answers preflights: /api/ allows Authorization, and /files/ exposes the same headers', async () => {
    const api = await fetch(`${server.url}/api/uploads/${'0'.repeat(32)}`, {
      method: 'OPTIONS',
      headers: { Origin: origin, 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'authorization' },
    });
    expect(api.status).toBe(204);
    expect(api.headers.get('access-control-allow-origin')).toBe(origin);
    expect(api.headers.get('access-control-allow-methods')).toContain('GET');
    expect(api.headers.get('access-control-allow-methods')).toContain('DELETE');
    expect(api.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
    expect(Number(api.headers.get('access-control-max-age'))).toBeGreaterThan(0);

    const tus = await fetch(`${server.url}/files/`, {
      method: 'OPTIONS',
      headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, upload-length' },
    });
    expect(tus.status).toBe(204);
    expect(tus.headers.get('access-control-allow-origin')).toBe(origin);
    expect(tus.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
    expect(new Set(exposedHeadersOf(tus))).toEqual(new Set(exposedHeadersOf(api)));
  });
});

describe('CORS with tokens and no CORS_ORIGINS', () => {
  const server = serverFor({ AUTH_SECRET: testAuthSecret });

  it('sends no Access-Control-Allow-Origin at all', async () => {
    const from = { Origin: 'https://app.example' };
    const token = await mintToken('alice');
    for (const res of [
      await fetch(`${server.url}/files/`, { method: 'OPTIONS', headers: { ...from, 'Access-Control-Request-Method': 'POST' } }),
      await fetch(`${server.url}/files/`, { method: 'POST', headers: { 'Tus-Resumable': V, 'Upload-Length': '10', ...from } }),
      await fetch(`${server.url}/files/`, { method: 'POST', headers: { 'Tus-Resumable': V, 'Upload-Length': '1000', ...from, ...bearer(token) } }),
      await fetch(`${server.url}/api/uploads`, { method: 'OPTIONS', headers: { ...from, 'Access-Control-Request-Method': 'GET' } }),
      await fetch(`${server.url}/api/uploads`, { headers: from }),
      await fetch(`${server.url}/healthz`, { headers: from }),
    ]) {
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
    }
  });
});

describe('hostile requests (tokens on)', () => {
  const server = serverFor({ AUTH_SECRET: testAuthSecret, METRICS_TOKEN: metricsToken });
  let uploadPath = '';
  let hostileOwner = 0;
  /** A valid token of an owner of its own, so no request counts against another's rate limit. */
  const validToken = () => mintToken(`hostile-${hostileOwner++}`);
  const malloryToken = () => mintToken('mallory');

  beforeAll(async () => {
    const res = await fetch(`${server.url}/files/`, {
      method: 'POST',
      headers: { 'Tus-Resumable': V, 'Upload-Length': '1000', 'Upload-Metadata': `filename ${b64('m.pdf')},filetype ${b64('application/pdf')}`, ...bearer(await malloryToken()) },
    });
    expect(res.status).toBe(201);
    uploadPath = new URL(res.headers.get('location')!).pathname;
  });

  const unsigned = (claims: object) => `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`;
  const now = () => Math.floor(Date.now() / 1000);
  const signed = (claims: Record<string, unknown>, alg = 'HS256', secret = testAuthSecret) =>
    new SignJWT(claims).setProtectedHeader({ alg }).sign(new TextEncoder().encode(secret));
  const badTokens: [string, () => Promise<string>][] = [
    ['no Authorization', async () => ''],
    ['an empty Bearer', async () => 'Bearer '],
    ['another scheme', async () => `Basic ${b64('alice:secret')}`],
    ['not a JWT', async () => 'Bearer not-a-jwt'],
    ['malformed segments', async () => 'Bearer a.b.c'],
    ['alg none', async () => `Bearer ${unsigned({ sub: 'alice', exp: now() + 600 })}`],
    ['a wrong signature', async () => `Bearer ${await mintToken('alice', { secret: 'another-secret-of-at-least-32-bytes!!' })}`],
    ['expired past AUTH_RESUME_GRACE', async () => `Bearer ${await mintToken('alice', { ttlSeconds: -2 * 86_400 })}`],
    ['no sub', async () => `Bearer ${await signed({ exp: now() + 600 })}`],
    ['an empty sub', async () => `Bearer ${await signed({ sub: '', exp: now() + 600 })}`],
    ['no exp', async () => `Bearer ${await signed({ sub: 'alice' })}`],
    ['HS512 instead of HS256', async () => `Bearer ${await signed({ sub: 'alice', exp: now() + 600 }, 'HS512', `${testAuthSecret}${testAuthSecret}`)}`],
    ['a bad max_size', async () => `Bearer ${await mintToken('alice', { claims: { max_size: 'lots' } })}`],
    ['bad types', async () => `Bearer ${await mintToken('alice', { claims: { types: 'image/*' } })}`],
    ['a 12 KB token', async () => `Bearer ${'A'.repeat(12_000)}`],
  ];

  interface Hostile {
    name: string;
    method: string;
    path: () => string;
    headers?: () => Promise<Record<string, string>>;
    body?: string;
    status: number;
  }
  const tusHeaders = (more: Record<string, string>) => async () => ({ 'Tus-Resumable': V, ...bearer(await validToken()), ...more });
  const post = (name: string, more: Record<string, string>, status: number): Hostile => ({
    name,
    method: 'POST',
    path: () => '/files/',
    headers: tusHeaders(more),
    status,
  });
  const patch = (name: string, offset: string, status: number): Hostile => ({
    name,
    method: 'PATCH',
    path: () => uploadPath,
    headers: async () => ({ 'Tus-Resumable': V, 'Content-Type': OCTETS, 'Upload-Offset': offset, ...bearer(await malloryToken()) }),
    body: 'abc',
    status,
  });
  const withId = (method: string, id: string, status = 404): Hostile => ({
    name: `${method} /files/${id.slice(0, 40)}`,
    method,
    path: () => `/files/${id}`,
    // What a PATCH needs too, so the id is what gets it refused.
    headers: async () => ({ 'Tus-Resumable': V, 'Content-Type': OCTETS, 'Upload-Offset': '0', ...bearer(await malloryToken()) }),
    status,
  });
  const api = (method: string, path: string, status = 404): Hostile => ({
    name: `${method} ${path.slice(0, 50)}`,
    method,
    path: () => path,
    headers: async () => bearer(await malloryToken()),
    status,
  });
  const fetched: Hostile[] = [
    ...badTokens.flatMap(([name, authorization]): Hostile[] => {
      const auth = async (): Promise<Record<string, string>> => ((await authorization()) ? { Authorization: await authorization() } : {});
      return [
        { name: `POST /files/ with ${name}`, method: 'POST', path: () => '/files/', headers: async () => ({ 'Tus-Resumable': V, 'Upload-Length': '10', ...(await auth()) }), status: 401 },
        { name: `HEAD of an upload with ${name}`, method: 'HEAD', path: () => uploadPath, headers: async () => ({ 'Tus-Resumable': V, ...(await auth()) }), status: 401 },
        { name: `GET /api/uploads with ${name}`, method: 'GET', path: () => '/api/uploads', headers: auth, status: 401 },
      ];
    }),
    post('Upload-Length not a number', { 'Upload-Length': 'abc' }, 400),
    post('Upload-Length negative', { 'Upload-Length': '-1' }, 400),
    post('Upload-Length in exponent form', { 'Upload-Length': '1e3' }, 400),
    post('Upload-Length a fraction', { 'Upload-Length': '10.5' }, 400),
    post('Upload-Length past 2^53', { 'Upload-Length': '99999999999999999999999' }, 400),
    post('Upload-Length over Tus-Max-Size', { 'Upload-Length': String(2 ** 50) }, 413),
    post('Upload-Length and Upload-Defer-Length', { 'Upload-Length': '10', 'Upload-Defer-Length': '1' }, 400),
    post('Upload-Defer-Length not 1', { 'Upload-Defer-Length': '2' }, 400),
    post('neither length', {}, 400),
    patch('Upload-Offset not a number', 'abc', 400),
    patch('Upload-Offset negative', '-5', 400),
    patch('Upload-Offset a fraction', '1.5', 400),
    patch('Upload-Offset past the upload', '999999999999', 409),
    post('metadata not base64', { 'Upload-Length': '10', 'Upload-Metadata': 'filename !!!not-base64***' }, 400),
    post('metadata with an extra space', { 'Upload-Length': '10', 'Upload-Metadata': 'filename a b' }, 400),
    post('metadata of empty pairs', { 'Upload-Length': '10', 'Upload-Metadata': ',,,' }, 400),
    post('metadata of 6 KB', { 'Upload-Length': '10', 'Upload-Metadata': `note ${b64('x'.repeat(4_500))}` }, 400),
    post('metadata of 200 keys', { 'Upload-Length': '10', 'Upload-Metadata': Array.from({ length: 200 }, (_, i) => `k${i} ${b64('v')}`).join(',') }, 400),
    post('a type the policy refuses', { 'Upload-Length': '10', 'Upload-Metadata': `filename ${b64('run.exe')},filetype ${b64('application/x-msdownload')}` }, 415),
    post('an unsupported Tus-Resumable', { 'Upload-Length': '10', 'Tus-Resumable': '0.2.2' }, 412),
    withId('HEAD', '%2e%2e%2f%2e%2e%2fetc%2fpasswd'),
    withId('PATCH', '..%2F..%2Fetc%2Fpasswd'),
    withId('DELETE', '..%5c..%5cwindows%5csystem32'),
    withId('HEAD', 'ABCDEF0123456789ABCDEF0123456789'),
    withId('HEAD', '0'.repeat(32)),
    withId('HEAD', `${'0'.repeat(32)}%00`),
    withId('HEAD', 'a'.repeat(4_000)),
    withId('DELETE', "1'%20OR%20'1'%3D'1"),
    api('GET', '/api/uploads/..%2F..%2Fetc%2Fpasswd'),
    api('GET', '/api/uploads/%2e%2e'),
    api('DELETE', '/api/uploads/%2e%2e%2f%2e%2e'),
    api('GET', `/api/uploads/${'0'.repeat(32)}/files/..%2f..%2fpackage.json`),
    api('GET', `/api/uploads/x/files/original?sig=AAAA&expires=1`),
    api('GET', `/api/uploads/${'0'.repeat(32)}/files/original?sig=AAAA&expires=99999999999`, 403),
    api('GET', "/api/uploads?limit=-1", 400),
    api('GET', '/api/uploads?limit=1e9', 400),
    api('GET', '/api/uploads?status=haunted', 400),
    api('GET', '/api/uploads?cursor=a&cursor=b', 400),
    { name: 'an unknown method on /files/', method: 'BREW', path: () => '/files/', headers: tusHeaders({}), status: 400 },
    { name: 'an unknown method overriding POST', method: 'POST', path: () => uploadPath, headers: tusHeaders({ 'X-HTTP-Method-Override': 'BREW' }), status: 404 },
    { name: 'PROPFIND on the API', method: 'PROPFIND', path: () => '/api/uploads', headers: async () => bearer(await malloryToken()), status: 405 },
    { name: 'PUT on a health check', method: 'PUT', path: () => '/healthz', status: 405 },
    { name: 'GET /files/ (no downloads there)', method: 'GET', path: () => uploadPath, headers: tusHeaders({}), status: 405 },
    { name: '/metrics without its token', method: 'GET', path: () => '/metrics', status: 401 },
    { name: '/metrics with a user token', method: 'GET', path: () => '/metrics', headers: async () => bearer(await validToken()), status: 401 },
  ];
  const request = (line: string, headers = 'Host: x\r\nConnection: close\r\n') => `${line}\r\n${headers}\r\n`;
  const raw: { name: string; bytes: () => string; status: number }[] = [
    { name: 'headers over MAX_HEADER_SIZE', bytes: () => request('GET /healthz HTTP/1.1', `Host: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n`), status: 431 },
    { name: 'a header line without a colon', bytes: () => request('GET /healthz HTTP/1.1', 'Host: x\r\nNoColonHere\r\n'), status: 400 },
    { name: 'a control character in a header', bytes: () => request('GET /healthz HTTP/1.1', 'Host: x\r\nX-A: a\u0001b\r\n'), status: 400 },
    { name: 'a garbage request line', bytes: () => request('GARBAGE'), status: 400 },
    { name: 'no Host in HTTP/1.1', bytes: () => request('GET /healthz HTTP/1.1', 'Connection: close\r\n'), status: 400 },
    { name: 'Content-Length and Transfer-Encoding (smuggling)', bytes: () => request('POST /files/ HTTP/1.1', 'Host: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n') + '0\r\n\r\n', status: 400 },
    { name: 'two different Content-Lengths', bytes: () => request('POST /files/ HTTP/1.1', 'Host: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n') + 'ab', status: 400 },
    { name: 'a negative Content-Length', bytes: () => request('POST /files/ HTTP/1.1', 'Host: x\r\nContent-Length: -1\r\n'), status: 400 },
    { name: 'a traversal path on the tus endpoint', bytes: () => request(`HEAD /files/../../etc/passwd HTTP/1.1`, `Host: x\r\nTus-Resumable: ${V}\r\nConnection: close\r\n`), status: 401 },
    { name: 'a traversal path on the API', bytes: () => request(`GET /api/uploads/../../../etc/passwd HTTP/1.1`), status: 401 },
    { name: 'TRACE', bytes: () => request('TRACE / HTTP/1.1'), status: 405 },
    { name: 'an absolute-form target', bytes: () => request('GET http://evil.example/api/uploads HTTP/1.1'), status: 401 },
  ];

  it(`answers ${fetched.length + raw.length} hostile requests 4xx, never 5xx, with a reason and no stack trace`, async () => {
    expect(fetched.length + raw.length).toBeGreaterThanOrEqual(50);
    const answers: { name: string; status: number; text: string }[] = [];
    for (const hostile of fetched) {
      const res = await fetch(`${server.url}${hostile.path()}`, { method: hostile.method, headers: (await hostile.headers?.()) ?? {}, body: hostile.body });
      answers.push({ name: hostile.name, status: res.status, text: await res.text() });
      expect({ name: hostile.name, status: res.status }).toEqual({ name: hostile.name, status: hostile.status });
    }
    for (const hostile of raw) {
      const { status, text } = await rawRequest(server.port, hostile.bytes());
      answers.push({ name: hostile.name, status, text });
      expect({ name: hostile.name, status }).toEqual({ name: hostile.name, status: hostile.status });
    }
    for (const answer of answers) {
      expect({ name: answer.name, status: answer.status >= 400 && answer.status < 500 }).toEqual({ name: answer.name, status: true });
      expect(answer.text).not.toMatch(/\n\s+at .+:\d+:\d+|internal error/);
    }
  });

  it('is healthy afterwards: /healthz answers and a normal upload works', async () => {
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    const headers = bearer(await mintToken('after-the-storm'));
    const file = pdf(50_000);
    const { url } = await tusUpload(server.url, file, { filename: 'fine.pdf', filetype: 'application/pdf', headers });
    const status = await fetchStatus(server.url, uploadIdOf(url), headers);
    expect(status.offset).toBe(file.length);
  });
});
