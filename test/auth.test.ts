import { generateKeyPairSync } from 'node:crypto';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLinkSigner } from '../server/auth/signedLinks.ts';
import type { RunningServer } from '../server/main/start.ts';
import { png, sha256 } from './support/samples.ts';
import { createTestEnvironment, setups, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { bearer, mintToken, testAuthSecret } from './support/tokens.ts';
import { fetchStatus, tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';

/**
 * Who may do what, with real tokens signed by jose: every route refuses a missing or bad token,
 * shows another owner's upload exactly as an unknown id, and serves the owner. Signed download
 * links, listing, quotas and the per-owner rate limit, in both setups.
 */

const V = '1.0.0';
const OCTETS = 'application/offset+octet-stream';
const authEnv = { AUTH_SECRET: testAuthSecret, RATE_LIMIT_UPLOADS: '0' };
const b64url = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** Every kind of token that must not pass, with a word its refusal must contain. */
async function badTokens() {
  const now = Math.floor(Date.now() / 1000);
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    'expired past the grace': { token: await mintToken('alice', { ttlSeconds: -3 * 86400 }), says: 'expired' },
    'wrongly signed': { token: await mintToken('alice', { secret: 'another-secret-of-at-least-32-bytes!!' }), says: 'signature' },
    'alg none': { token: `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ sub: 'alice', exp: now + 3600 })}.`, says: 'algorithm' },
    'RS256 where HS256 is expected': {
      token: await new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).setSubject('alice').setExpirationTime(now + 3600).sign(privateKey),
      says: 'algorithm',
    },
    'without sub': {
      token: await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(now + 3600).sign(new TextEncoder().encode(testAuthSecret)),
      says: 'sub',
    },
    malformed: { token: 'not.a.jwt', says: 'malformed' },
  };
}

describe.each(setups)('tokens and owners (%s)', (setup) => {
  let environment: TestEnvironment;
  let server: RunningServer;
  let alice: string;
  let bob: string;
  /** Alice's token, past its exp but within AUTH_RESUME_GRACE. */
  let aliceExpired: string;
  let bad: Awaited<ReturnType<typeof badTokens>>;
  /** Alice's finished PNG, ready with outputs. */
  let ready: string;

  const request = (method: string, path: string, headers: Record<string, string> = {}, body?: Buffer) =>
    fetch(`${server.url}${path}`, { method, headers: { 'Tus-Resumable': V, ...headers }, body: body && new Uint8Array(body), redirect: 'manual' });
  const create = async (token: string | undefined, length = 100) => {
    const res = await request('POST', '/files/', { 'Upload-Length': String(length), ...(token ? bearer(token) : {}) });
    return { res, id: (res.headers.get('location') ?? '').split('/').pop()! };
  };
  const unfinished = async () => (await create(alice)).id;

  beforeAll(async () => {
    environment = await createTestEnvironment(setup, authEnv);
    server = await startTestServer(environment);
    [alice, bob, aliceExpired, bad] = await Promise.all([mintToken('alice'), mintToken('bob'), mintToken('alice', { ttlSeconds: -60 }), badTokens()]);
    const { url } = await tusUpload(server.url, png(320, 240), { filename: 'photo.png', filetype: 'image/png', headers: bearer(alice) });
    ready = uploadIdOf(url);
    expect((await waitUntilSettled(server.url, ready, 30_000, bearer(alice))).status).toBe('ready');
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
  });

  /** Each route, and how to call it on one of alice's uploads (made fresh where the call consumes it). */
  const routes: { name: string; call: (token: string | undefined, id?: string) => Promise<Response>; target: () => Promise<string> | string; owner: number }[] = [
    { name: 'POST /files/', call: (t) => create(t).then((c) => c.res), target: () => '', owner: 201 },
    { name: 'HEAD /files/:id', call: (t, id) => request('HEAD', `/files/${id}`, t ? bearer(t) : {}), target: unfinished, owner: 200 },
    {
      name: 'PATCH /files/:id',
      call: (t, id) => request('PATCH', `/files/${id}`, { 'Content-Type': OCTETS, 'Upload-Offset': '0', ...(t ? bearer(t) : {}) }, Buffer.alloc(10)),
      target: unfinished,
      owner: 204,
    },
    { name: 'DELETE /files/:id', call: (t, id) => request('DELETE', `/files/${id}`, t ? bearer(t) : {}), target: unfinished, owner: 204 },
    { name: 'GET /api/uploads', call: (t) => request('GET', '/api/uploads', t ? bearer(t) : {}), target: () => '', owner: 200 },
    { name: 'GET /api/uploads/:id', call: (t, id) => request('GET', `/api/uploads/${id}`, t ? bearer(t) : {}), target: () => ready, owner: 200 },
    {
      name: 'GET /api/uploads/:id/files/original',
      call: (t, id) => request('GET', `/api/uploads/${id}/files/original`, t ? bearer(t) : {}),
      target: () => ready,
      owner: setup === 'scaleout' ? 302 : 200,
    },
    { name: 'DELETE /api/uploads/:id', call: (t, id) => request('DELETE', `/api/uploads/${id}`, t ? bearer(t) : {}), target: unfinished, owner: 204 },
  ];

  describe.each(routes)('$name', (route) => {
    it('asks for a token when there is none: 401 with WWW-Authenticate: Bearer', async () => {
      const res = await route.call(undefined, await route.target());
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
    });

    it('refuses every bad kind of token with 401 invalid_token and says why in the header', async () => {
      const id = await route.target();
      for (const [kind, { token, says }] of Object.entries(bad)) {
        const res = await route.call(token, id);
        expect(res.status, kind).toBe(401);
        const challenge = res.headers.get('www-authenticate') ?? '';
        expect(challenge, kind).toMatch(/^Bearer error="invalid_token", error_description="[^"]+"$/);
        expect(challenge, kind).toContain(says);
        const body = await res.text();
        if (route.name.startsWith('HEAD')) expect(body).toBe('');
        else expect(body, kind).toContain(says);
        expect(body).not.toMatch(/at .*\.ts:\d+/);
      }
    });

    it("answers another owner's upload exactly as an unknown id, and serves the owner", async () => {
      const id = await route.target();
      if (id) {
        const unknown = await route.call(bob, 'f'.repeat(32));
        const others = await route.call(bob, id);
        expect(others.status).toBe(404);
        expect(others.status).toBe(unknown.status);
        expect(await others.text()).toBe((await unknown.text()).replace('f'.repeat(32), id));
      }
      const res = await route.call(alice, id);
      expect(res.status).toBe(route.owner);
    });
  });

  it('lets an expired token (within AUTH_RESUME_GRACE) resume its own unfinished upload, and nothing else', async () => {
    const id = await unfinished();
    expect((await request('HEAD', `/files/${id}`, bearer(aliceExpired))).status).toBe(200);
    const patched = await request('PATCH', `/files/${id}`, { 'Content-Type': OCTETS, 'Upload-Offset': '0', ...bearer(aliceExpired) }, Buffer.alloc(100));
    expect(patched.status).toBe(204);
    // Now finished: resuming is over, and so is the grace.
    expect((await request('HEAD', `/files/${id}`, bearer(aliceExpired))).status).toBe(401);
    expect((await request('HEAD', `/files/${ready}`, bearer(aliceExpired))).status).toBe(401);
    expect((await create(aliceExpired)).res.status).toBe(401);
    for (const path of ['/api/uploads', `/api/uploads/${ready}`, `/api/uploads/${ready}/files/original`]) {
      const res = await request('GET', path, bearer(aliceExpired));
      expect(res.status, path).toBe(401);
      expect(res.headers.get('www-authenticate')).toContain('expired');
    }
    expect((await request('DELETE', `/files/${await unfinished()}`, bearer(aliceExpired))).status).toBe(401);
    // Another owner's expired token gets the unknown-id answer, not a hint.
    expect((await request('HEAD', `/files/${await unfinished()}`, bearer(await mintToken('bob', { ttlSeconds: -60 })))).status).toBe(404);
  });

  it('takes a link signature as a credential only for downloads', async () => {
    const signature = new URL((await fetchStatus(server.url, ready, bearer(alice))).links.original!).search;
    for (const [method, path] of [['GET', `/api/uploads/${ready}`], ['DELETE', `/api/uploads/${ready}`], ['GET', '/api/uploads']]) {
      expect((await request(method!, `${path}${signature}`)).status, `${method} ${path}`).toBe(401);
    }
  });

  it('never serves stored bytes from the tus endpoint, even to the owner', async () => {
    const res = await request('GET', `/files/${ready}`, bearer(alice));
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).not.toContain('GET');
  });

  it('reports the owner in the status JSON', async () => {
    const status = await fetchStatus(server.url, ready, bearer(alice));
    expect(status.owner).toBe('alice');
  });

  it('hands out signed links that work without a header, and refuses tampered and expired ones with 403', async () => {
    const status = await fetchStatus(server.url, ready, bearer(alice));
    const original = new URL(status.links.original!);
    expect(original.searchParams.get('sig')).toMatch(/^[\w-]{43}$/);
    // The same link for a while, so a browser can keep what it fetched.
    expect((await fetchStatus(server.url, ready, bearer(alice))).links.original).toBe(status.links.original);

    const res = await fetch(original);
    expect(res.status).toBe(200);
    expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(status.sha256);

    const thumbnail = status.outputs.find((o) => o.name === 'thumbnail')!;
    expect((await fetch(thumbnail.url!)).status).toBe(200);

    const tampered = new URL(original);
    tampered.searchParams.set('sig', `${tampered.searchParams.get('sig')!.slice(0, -2)}AA`);
    const refused = await fetch(tampered);
    expect(refused.status).toBe(403);
    expect(await refused.text()).toContain('signature');
    // One upload's signature does not open another name of it.
    const otherName = new URL(original.toString().replace('/files/original', '/files/thumbnail'));
    expect((await fetch(otherName)).status).toBe(403);
    const later = new URL(original);
    later.searchParams.set('expires', String(Number(later.searchParams.get('expires')) + 3600));
    expect((await fetch(later)).status).toBe(403);

    const config = server.services.context.config;
    if (config.auth.mode !== 'token') throw new Error('auth is on in this test');
    const signer = createLinkSigner(config.auth.linkSecret, config.downloadLinkTtlMs);
    const expired = await fetch(`${server.url}/api/uploads/${ready}/files/original${signer.query(ready, 'original', Date.now() - 3 * config.downloadLinkTtlMs)}`);
    expect(expired.status).toBe(403);
    expect(await expired.text()).toContain('expired');
  });

  it('serves downloads with the detected type, nosniff, a sandboxing CSP, and inline only for outputs', async () => {
    const status = await fetchStatus(server.url, ready, bearer(alice));
    const original = await fetch(status.links.original!, { redirect: 'manual' });
    const thumbnail = await fetch(status.outputs.find((o) => o.name === 'thumbnail')!.url!, { redirect: 'manual' });
    if (setup === 'embedded') {
      for (const res of [original, thumbnail]) {
        expect(res.headers.get('x-content-type-options')).toBe('nosniff');
        expect(res.headers.get('content-security-policy')).toBe("default-src 'none'; sandbox");
      }
      expect(original.headers.get('content-type')).toBe('image/png');
      expect(original.headers.get('content-disposition')).toMatch(/^attachment; filename="photo.png"/);
      expect(thumbnail.headers.get('content-type')).toBe('image/jpeg');
      expect(thumbnail.headers.get('content-disposition')).toMatch(/^inline; /);
    } else {
      // A presigned redirect can set only the response's type and disposition.
      const originalTarget = new URL(original.headers.get('location')!);
      expect(originalTarget.searchParams.get('response-content-type')).toBe('image/png');
      expect(originalTarget.searchParams.get('response-content-disposition')).toMatch(/^attachment; /);
      const thumbnailTarget = new URL(thumbnail.headers.get('location')!);
      expect(thumbnailTarget.searchParams.get('response-content-disposition')).toMatch(/^inline; /);
      const fetched = await fetch(originalTarget);
      expect(fetched.status).toBe(200);
      expect(fetched.headers.get('content-type')).toBe('image/png');
    }
  });

  it("lists the caller's own uploads, newest first, page by page, filtered by status", async () => {
    const carol = await mintToken('carol');
    const made: string[] = [];
    for (let i = 0; i < 3; i++) made.push((await create(carol)).id);
    await create(bob);
    const list = async (query: string, token = carol) => {
      const res = await request('GET', `/api/uploads${query}`, bearer(token));
      expect(res.status).toBe(200);
      return (await res.json()) as { items: { id: string; owner: string; status: string }[]; nextCursor: string | null };
    };
    const all = await list('');
    expect(all.items.map((i) => i.id)).toEqual([...made].reverse());
    expect(all.nextCursor).toBeNull();
    const first = await list('?limit=2');
    expect(first.items.map((i) => i.id)).toEqual([made[2], made[1]]);
    expect(first.nextCursor).toEqual(expect.any(String));
    const second = await list(`?limit=2&cursor=${first.nextCursor}`);
    expect(second.items.map((i) => i.id)).toEqual([made[0]]);
    expect(second.nextCursor).toBeNull();
    expect((await list('?status=ready')).items).toEqual([]);
    expect((await list('?status=ready', alice)).items.map((i) => i.id)).toContain(ready);
    expect((await list('?status=uploading', alice)).items.every((i) => i.status === 'uploading' && i.owner === 'alice')).toBe(true);
    for (const query of ['?limit=0', '?limit=101', '?limit=x', '?status=nonsense']) {
      expect((await request('GET', `/api/uploads${query}`, bearer(carol))).status, query).toBe(400);
    }
  });
});

describe('resuming on another instance, as the same owner (scaleout)', () => {
  let environment: TestEnvironment;
  let a: RunningServer;
  let b: RunningServer;
  let open: RunningServer;

  beforeAll(async () => {
    environment = await createTestEnvironment('scaleout', authEnv);
    [a, b] = await Promise.all([startTestServer(environment), startTestServer(environment)]);
    open = await startTestServer(environment, { AUTH_SECRET: '' });
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close(), open?.close()]);
    await environment?.destroy();
  });

  it('goes on where it stopped on the other instance; another owner there gets 404', async () => {
    const alice = bearer(await mintToken('alice'));
    const data = png(800, 600);
    const started = await tusUpload(a.url, data, { filename: 'p.png', filetype: 'image/png', chunkSize: 4096, abortAfterBytes: 4096, headers: alice });
    expect(started.aborted).toBe(true);
    const id = uploadIdOf(started.url);
    const onB = `${b.url}/files/${id}`;
    expect((await fetch(onB, { method: 'HEAD', headers: { 'Tus-Resumable': V, ...bearer(await mintToken('bob')) } })).status).toBe(404);
    await tusUpload(b.url, data, { uploadUrl: onB, headers: alice });
    expect((await waitUntilSettled(b.url, id, 30_000, alice)).status).toBe('ready');
  });

  it('keeps uploads made while the server was open apart: they have no owner, and no token sees them', async () => {
    const { url } = await tusUpload(open.url, png(), { filename: 'open.png', filetype: 'image/png' });
    const id = uploadIdOf(url);
    const listed = (await (await fetch(`${open.url}/api/uploads`)).json()) as { items: { id: string; owner: string | null }[] };
    expect(listed.items.map((i) => i.id)).toContain(id);
    expect(listed.items.every((i) => i.owner === null)).toBe(true);
    const alice = bearer(await mintToken('alice'));
    expect((await fetch(`${a.url}/api/uploads/${id}`, { headers: alice })).status).toBe(404);
    const mine = (await (await fetch(`${a.url}/api/uploads`, { headers: alice })).json()) as { items: { id: string }[] };
    expect(mine.items.map((i) => i.id)).not.toContain(id);
  });
});

describe.each(setups)('quotas per owner (%s)', (setup) => {
  let environment: TestEnvironment;
  let server: RunningServer;

  beforeAll(async () => {
    environment = await createTestEnvironment(setup, { ...authEnv, QUOTA_UPLOADS_IN_FLIGHT: '2', QUOTA_BYTES: '1000' });
    server = await startTestServer(environment);
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
  });

  const create = (owner: string, length: number) =>
    mintToken(owner).then((token) => fetch(`${server.url}/files/`, { method: 'POST', headers: { 'Tus-Resumable': V, 'Upload-Length': String(length), ...bearer(token) } }));

  it('refuses a third unfinished upload with 403 naming the quota; an expired one stops counting', async () => {
    expect((await create('dana', 10)).status).toBe(201);
    const second = await create('dana', 10);
    expect(second.status).toBe(201);
    const third = await create('dana', 10);
    expect(third.status).toBe(403);
    expect(await third.text()).toContain('QUOTA_UPLOADS_IN_FLIGHT');
    // Another owner has a quota of their own.
    expect((await create('erin', 10)).status).toBe(201);
    const abandoned = second.headers.get('location')!.split('/').pop()!;
    await server.services.context.db.updateTable('uploads').set({ expires_at: new Date(Date.now() - 1000) }).where('id', '=', abandoned).execute();
    expect((await create('dana', 10)).status).toBe(201);
  });

  it('holds exactly under concurrent creations', async () => {
    const results = await Promise.all(Array.from({ length: 6 }, () => create('frank', 10)));
    expect(results.map((r) => r.status).sort()).toEqual([201, 201, 403, 403, 403, 403]);
  });

  it('refuses an upload that would take the owner past QUOTA_BYTES with 413', async () => {
    expect((await create('gina', 600)).status).toBe(201);
    const over = await create('gina', 500);
    expect(over.status).toBe(413);
    expect(await over.text()).toContain('QUOTA_BYTES');
    expect((await create('gina', 400)).status).toBe(201);
  });

  it('holds a deferred-length upload to what the bytes quota leaves', async () => {
    const token = bearer(await mintToken('hugo'));
    expect((await create('hugo', 700)).status).toBe(201);
    const deferred = await fetch(`${server.url}/files/`, { method: 'POST', headers: { 'Tus-Resumable': V, 'Upload-Defer-Length': '1', ...token } });
    expect(deferred.status).toBe(201);
    const patch = (body: Buffer, offset: number, headers: Record<string, string> = {}) =>
      fetch(deferred.headers.get('location')!, {
        method: 'PATCH',
        headers: { 'Tus-Resumable': V, 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(offset), ...token, ...headers },
        body: new Uint8Array(body),
      });
    expect((await patch(Buffer.alloc(301), 0, { 'Upload-Length': '301' })).status).toBe(413);
    expect((await patch(Buffer.alloc(300), 0, { 'Upload-Length': '300' })).status).toBe(204);
  });
});

describe('the rate limit counts per owner when there is a token', () => {
  let environment: TestEnvironment;
  let server: RunningServer;

  beforeAll(async () => {
    environment = await createTestEnvironment('embedded', { AUTH_SECRET: testAuthSecret, RATE_LIMIT_UPLOADS: '2' });
    server = await startTestServer(environment);
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
  });

  it("refuses an owner's third creation in a minute, while another owner from the same address goes on", async () => {
    const create = async (owner: string) =>
      fetch(`${server.url}/files/`, { method: 'POST', headers: { 'Tus-Resumable': V, 'Upload-Length': '10', ...bearer(await mintToken(owner)) } });
    expect((await create('hana')).status).toBe(201);
    expect((await create('hana')).status).toBe(201);
    const refused = await create('hana');
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await refused.text()).toContain('by this owner');
    expect((await create('ivan')).status).toBe(201);
  });
});
