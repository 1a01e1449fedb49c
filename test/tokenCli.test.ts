import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../server/main/start.ts';
import { npmScriptArgs } from './support/processes.ts';
import { randomBytesOf, png } from './support/samples.ts';
import { repoRoot } from './services/env.ts';
import { createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { bearer, testAuthSecret } from './support/tokens.ts';
import { fetchStatus, tusRefusal, tusUpload, uploadIdOf } from './support/uploads.ts';

interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command in the repo with only the given environment (and PATH), as a shell would. */
function run(file: string, args: string[], env: Record<string, string>): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: repoRoot, env: { PATH: process.env.PATH!, HOME: os.tmpdir(), ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** What `npm run token` runs, without npm's start-up. */
const tokenCli = (args: string[], env: Record<string, string> = {}) => run(process.execPath, [...npmScriptArgs('server/main/token.ts'), ...args], env);

async function mint(args: string[], env: Record<string, string>): Promise<string> {
  const result = await tokenCli(args, env);
  expect(result, result.stderr).toMatchObject({ code: 0, stderr: '' });
  return result.stdout.trim();
}

const withSecret = { AUTH_SECRET: testAuthSecret };
const MiB = 1024 * 1024;

describe('npm run token', () => {
  it('prints the token alone on stdout through the npm script', async () => {
    const result = await run('npm', ['run', '--silent', 'token', '--', '--owner', 'alice'], withSecret);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
  });

  it('signs sub, iat and exp with AUTH_SECRET, and the limits and iss/aud when asked', async () => {
    const before = Math.floor(Date.now() / 1000);
    const plain = await mint(['--owner', 'alice'], withSecret);
    const after = Math.ceil(Date.now() / 1000);
    expect(decodeProtectedHeader(plain).alg).toBe('HS256');
    const claims = decodeJwt(plain);
    expect(Object.keys(claims).sort()).toEqual(['exp', 'iat', 'sub']);
    expect(claims.sub).toBe('alice');
    expect(claims.exp! - claims.iat!).toBe(3600);
    expect(claims.iat).toBeGreaterThanOrEqual(before);
    expect(claims.iat).toBeLessThanOrEqual(after);

    const narrowed = decodeJwt(
      await mint(['--owner', 'bob', '--ttl', '15m', '--max-size', '20MiB', '--types', 'image/jpeg, image/png'], { ...withSecret, AUTH_ISSUER: 'https://app.example', AUTH_AUDIENCE: 'uploads' }),
    );
    expect(narrowed).toMatchObject({ sub: 'bob', max_size: 20 * MiB, types: ['image/jpeg', 'image/png'], iss: 'https://app.example', aud: 'uploads' });
    expect(narrowed.exp! - narrowed.iat!).toBe(900);
  });

  const mistakes: [string, string[], Record<string, string>, RegExp][] = [
    ['an unknown flag', ['--owner', 'alice', '--size', '1MiB'], withSecret, /Unknown option '--size'/],
    ['no --owner', [], withSecret, /--owner is required/],
    ['a positional argument', ['alice'], withSecret, /positional argument/],
    ['a --ttl without a unit it knows', ['--owner', 'alice', '--ttl', '1 week'], withSecret, /--ttl: "1 week" is not a duration/],
    ['a --max-size that is not a size', ['--owner', 'alice', '--max-size', 'big'], withSecret, /--max-size: "big" is not a size/],
    ['--types that are not MIME types', ['--owner', 'alice', '--types', 'jpeg,png'], withSecret, /--types: "jpeg" is not a comma list of MIME types/],
    ['no AUTH_SECRET', ['--owner', 'alice'], {}, /AUTH_SECRET is not set/],
    ['a short AUTH_SECRET', ['--owner', 'alice'], { AUTH_SECRET: 'too-short' }, /AUTH_SECRET: must be at least 32 bytes/],
    ['a public-key server without --private-key', ['--owner', 'alice'], { AUTH_PUBLIC_KEY: '/etc/keys/upload.pub' }, /verifies with AUTH_PUBLIC_KEY: pass --private-key FILE/],
    ['a --private-key file that is not there', ['--owner', 'alice', '--private-key', '/nonexistent/key.pem'], {}, /--private-key: cannot read \/nonexistent\/key.pem \(ENOENT\)/],
  ];
  it.each(mistakes)('refuses %s with a message and the usage, exit 1, nothing on stdout', async (_name, args, env, message) => {
    const result = await tokenCli(args, env);
    expect(result).toMatchObject({ code: 1, stdout: '' });
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toContain('usage: npm run --silent token -- --owner');
  });

  describe('its tokens on a server with AUTH_SECRET, AUTH_ISSUER and AUTH_AUDIENCE', () => {
    const issuerAndAudience = { AUTH_ISSUER: 'https://app.example', AUTH_AUDIENCE: 'uploads' };
    let environment: TestEnvironment;
    let server: RunningServer;
    beforeAll(async () => {
      environment = await createTestEnvironment('embedded', { ...withSecret, ...issuerAndAudience });
      server = await startTestServer(environment);
    });
    afterAll(async () => {
      await server?.close();
      await environment?.destroy();
    });

    it('are accepted, and carry their limits: another type is 415, more bytes are 413', { timeout: 60_000 }, async () => {
      const token = await mint(['--owner', 'alice', '--types', 'image/png', '--max-size', '1MiB'], { ...withSecret, ...issuerAndAudience });
      const headers = bearer(token);
      const { url } = await tusUpload(server.url, png(), { filename: 'photo.png', filetype: 'image/png', headers });
      expect(await fetchStatus(server.url, uploadIdOf(url), headers)).toMatchObject({ owner: 'alice' });

      const jpeg = await tusRefusal(tusUpload(server.url, randomBytesOf(1000), { filename: 'photo.jpg', filetype: 'image/jpeg', headers }));
      expect(jpeg.status).toBe(415);
      expect(jpeg.body).toContain('image/jpeg is not allowed');
      const tooBig = await tusRefusal(tusUpload(server.url, randomBytesOf(MiB + 1), { filename: 'big.png', filetype: 'image/png', headers }));
      expect(tooBig.status).toBe(413);
      expect(tooBig.body).toContain(`${MiB}-byte limit`);
    });
  });

  describe('with --private-key, on a server that verifies with AUTH_PUBLIC_KEY', () => {
    let keyDir: string;
    let environment: TestEnvironment;
    beforeAll(async () => {
      keyDir = await mkdtemp(path.join(os.tmpdir(), 'token-keys-'));
      environment = await createTestEnvironment('embedded');
    });
    afterAll(async () => {
      await environment?.destroy();
      await rm(keyDir, { recursive: true, force: true });
    });

    const keyPairs = {
      EdDSA: () => generateKeyPairSync('ed25519'),
      ES256: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }),
      RS256: () => generateKeyPairSync('rsa', { modulusLength: 2048 }),
    };
    it.each(Object.entries(keyPairs))('signs with %s when the key is of that kind, and the server accepts it', { timeout: 60_000 }, async (algorithm, generate) => {
      const { privateKey, publicKey } = generate();
      const keyFile = path.join(keyDir, `${algorithm}.pem`);
      await writeFile(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }));
      const token = await mint(['--owner', 'carol', '--private-key', keyFile], {});
      expect(decodeProtectedHeader(token).alg).toBe(algorithm);

      const server = await startTestServer(environment, {
        AUTH_PUBLIC_KEY: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
        LINK_SECRET: 'link-secret-of-at-least-32-bytes-long',
      });
      try {
        const { url } = await tusUpload(server.url, png(), { filename: 'photo.png', filetype: 'image/png', headers: bearer(token) });
        expect(await fetchStatus(server.url, uploadIdOf(url), bearer(token))).toMatchObject({ owner: 'carol' });
        // A token from another key of the same kind does not verify.
        const otherKeyFile = path.join(keyDir, `${algorithm}-other.pem`);
        await writeFile(otherKeyFile, generate().privateKey.export({ type: 'pkcs8', format: 'pem' }));
        const forged = await mint(['--owner', 'carol', '--private-key', otherKeyFile], {});
        expect((await tusRefusal(tusUpload(server.url, png(), { filename: 'photo.png', filetype: 'image/png', headers: bearer(forged) }))).status).toBe(401);
      } finally {
        await server.close();
      }
    });

    it('refuses a key the server cannot verify with (an X25519 key signs nothing)', async () => {
      const keyFile = path.join(keyDir, 'x25519.pem');
      await writeFile(keyFile, generateKeyPairSync('x25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
      const result = await tokenCli(['--owner', 'carol', '--private-key', keyFile]);
      expect(result).toMatchObject({ code: 1, stdout: '' });
      expect(result.stderr).toContain('a x25519 key is not supported (RSA for RS256, EC P-256 for ES256, Ed25519 for EdDSA)');
    });
  });
});
