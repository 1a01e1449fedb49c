import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, SignJWT, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTokenVerifier, type TokenCheck } from '../server/auth/verifyToken.ts';
import { ConfigError, loadConfig } from '../server/infra/settings/config.ts';
import { testAuthSecret } from './support/tokens.ts';

/**
 * The three ways to verify tokens (AUTH_SECRET, AUTH_PUBLIC_KEY, AUTH_JWKS_URL), the claims the
 * server reads, and the settings that must stop a start. Real keys and real jose signatures.
 */

const hour = () => Math.floor(Date.now() / 1000) + 3600;

function verifierFor(env: Record<string, string>) {
  const config = loadConfig(env);
  if (config.auth.mode !== 'token') throw new Error('expected tokens');
  return createTokenVerifier(config.auth);
}

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
}

const ownerOf = (check: TokenCheck) => ('caller' in check ? check.caller.owner : `refused: ${check.refusal.description}`);

describe('public keys', () => {
  const kinds = [
    { alg: 'RS256', pair: () => generateKeyPairSync('rsa', { modulusLength: 2048 }) },
    { alg: 'ES256', pair: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }) },
    { alg: 'EdDSA', pair: () => generateKeyPairSync('ed25519') },
  ] as const;

  it.each(kinds)('verifies $alg tokens with AUTH_PUBLIC_KEY, and refuses HS256 signed with the public key itself', async ({ alg, pair }) => {
    const { publicKey, privateKey } = pair();
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const verify = verifierFor({ AUTH_PUBLIC_KEY: pem, LINK_SECRET: testAuthSecret });
    const token = await new SignJWT({}).setProtectedHeader({ alg }).setSubject('alice').setExpirationTime(hour()).sign(privateKey);
    expect(ownerOf(await verify(token))).toBe('alice');
    // Algorithm confusion: the PEM is public, so a token "signed" with it as an HMAC key must fail.
    const confused = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('mallory').setExpirationTime(hour()).sign(new TextEncoder().encode(pem));
    expect(ownerOf(await verify(confused))).toMatch(/^refused: .*algorithm/);
  });

  it('needs LINK_SECRET with a public key, which cannot sign links', () => {
    const pem = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(problemsOf({ AUTH_PUBLIC_KEY: pem })).toEqual([expect.stringMatching(/^LINK_SECRET: required/)]);
  });
});

describe('a JWKS', () => {
  let server: http.Server;
  let keys: JWK[] = [];
  let fetches = 0;
  let url: string;

  beforeAll(async () => {
    server = http.createServer((_req, res) => {
      fetches++;
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ keys }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  async function keyPair(kid: string) {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    return { jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256' }, privateKey, kid };
  }
  const sign = (key: Awaited<ReturnType<typeof keyPair>>, owner: string) =>
    new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: key.kid }).setSubject(owner).setExpirationTime(hour()).sign(key.privateKey);

  it('verifies with the key set and keeps it cached; a key not in the set is refused', async () => {
    const first = await keyPair('one');
    const second = await keyPair('two');
    keys = [first.jwk, second.jwk];
    const verify = verifierFor({ AUTH_JWKS_URL: url, LINK_SECRET: testAuthSecret });
    expect(ownerOf(await verify(await sign(first, 'alice')))).toBe('alice');
    expect(ownerOf(await verify(await sign(second, 'bob')))).toBe('bob');
    expect(fetches).toBe(1);
    const stranger = await keyPair('three');
    expect(ownerOf(await verify(await sign(stranger, 'mallory')))).toMatch(/^refused: no key of the key set/);
  });

  it('answers 503, not 401, when the key set cannot be fetched', async () => {
    const verify = verifierFor({ AUTH_JWKS_URL: 'http://127.0.0.1:9/jwks.json', LINK_SECRET: testAuthSecret });
    const check = await verify(await sign(await keyPair('x'), 'alice'));
    expect('refusal' in check && check.refusal.status).toBe(503);
  });
});

describe('claims', () => {
  const verify = verifierFor({ AUTH_SECRET: testAuthSecret, AUTH_ISSUER: 'https://app.example', AUTH_AUDIENCE: 'uploads' });
  const key = new TextEncoder().encode(testAuthSecret);
  const token = (claims: Record<string, unknown>, iss = 'https://app.example', aud = 'uploads') =>
    new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setIssuer(iss).setAudience(aud).setExpirationTime(hour()).sign(key);

  it('reads max_size and types as limits', async () => {
    const check = await verify(await token({ max_size: 1000, types: ['image/png'] }));
    expect('caller' in check && check.caller.limits).toEqual({ maxSize: 1000, types: ['image/png'] });
  });

  it.each([
    ['a max_size that is not a positive whole number', { max_size: '1000' }, 'max_size'],
    ['types that are not MIME types', { types: 'image/png' }, 'types'],
  ])('refuses %s', async (_name, claims, says) => {
    expect(ownerOf(await verify(await token(claims)))).toContain(says);
  });

  it('checks AUTH_ISSUER and AUTH_AUDIENCE', async () => {
    expect(ownerOf(await verify(await token({}, 'https://evil.example')))).toContain('iss');
    expect(ownerOf(await verify(await token({}, 'https://app.example', 'other')))).toContain('aud');
  });

  it('refuses a token without exp', async () => {
    const forever = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setIssuer('https://app.example').setAudience('uploads').sign(key);
    expect(ownerOf(await verify(forever))).toContain('exp');
  });
});

describe('settings', () => {
  it('refuses to start open under NODE_ENV=production, naming AUTH_SECRET, unless AUTH=off', () => {
    expect(problemsOf({ NODE_ENV: 'production' })).toEqual([expect.stringMatching(/^AUTH_SECRET: required when NODE_ENV=production/)]);
    expect(loadConfig({ NODE_ENV: 'production', AUTH: 'off' }).auth).toEqual({ mode: 'open', explicit: true });
    expect(loadConfig({ NODE_ENV: 'production', AUTH_SECRET: testAuthSecret }).auth.mode).toBe('token');
  });

  it('reports every bad auth setting at once', () => {
    expect(problemsOf({ AUTH_SECRET: 'short', AUTH_JWKS_URL: 'http://x/jwks', LINK_SECRET: 'tiny' })).toEqual([
      expect.stringMatching(/^AUTH_SECRET, AUTH_JWKS_URL: set only one/),
      expect.stringMatching(/^AUTH_SECRET: must be at least 32 bytes/),
      expect.stringMatching(/^LINK_SECRET: must be at least 32 bytes/),
    ]);
    expect(problemsOf({ AUTH: 'off', AUTH_SECRET: testAuthSecret })).toEqual([expect.stringMatching(/^AUTH: off contradicts AUTH_SECRET/)]);
    expect(problemsOf({ AUTH_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----', LINK_SECRET: testAuthSecret })).toEqual([
      expect.stringMatching(/^AUTH_PUBLIC_KEY: not a PEM public key/),
    ]);
  });

  it('takes the UTF-8 bytes of AUTH_SECRET, as an app using jose signs with them', async () => {
    const secret = 'ünïcödé-secret-that-is-long-enough-for-hs256';
    const verify = verifierFor({ AUTH_SECRET: secret });
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setExpirationTime(hour()).sign(new TextEncoder().encode(secret));
    expect(ownerOf(await verify(token))).toBe('alice');
  });
});
