import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ConfigError, loadConfig } from '../server/config.ts';
import { repoRoot } from './services/env.ts';

/**
 * docker is not run here, so these read docker-compose.yml (with the `yaml` package, which
 * resolves its anchors and merge keys as Compose does) and the Dockerfile as text.
 */
const compose = parse(readFileSync(path.join(repoRoot, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  'x-app-env': Record<string, string>;
  services: Record<string, { environment?: Record<string, string> }>;
};
const composeText = readFileSync(path.join(repoRoot, 'docker-compose.yml'), 'utf8');
const dockerfile = readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8');

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
});
