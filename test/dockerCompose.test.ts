import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../server/config.ts';
import { repoRoot } from './services/env.ts';

/**
 * docker is not run here, so these read docker-compose.yml and the Dockerfile as text. The reader
 * below knows only the shapes those files use (nested maps, flat `KEY: value` lists, `<<: *anchor`)
 * and throws on anything it does not find, rather than guess.
 */
const compose = readFileSync(path.join(repoRoot, 'docker-compose.yml'), 'utf8').split('\n');
const dockerfile = readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8');

const indentOf = (line: string) => line.length - line.trimStart().length;
const meaningful = (line: string) => line.trim() !== '' && !line.trim().startsWith('#');

/** The lines nested under the key at `keys` (a path of map keys from the top), and that key's own line. */
function block(keys: string[]): { head: string; lines: string[] } {
  let lines = compose.filter(meaningful);
  let head = '';
  for (const key of keys) {
    const indent = lines.length > 0 ? Math.min(...lines.map(indentOf)) : 0;
    const start = lines.findIndex((line) => indentOf(line) === indent && line.trim().startsWith(`${key}:`));
    if (start < 0) throw new Error(`docker-compose.yml: no ${keys.join(' → ')}`);
    head = lines[start]!.trim();
    const end = lines.findIndex((line, i) => i > start && indentOf(line) <= indent);
    lines = lines.slice(start + 1, end < 0 ? undefined : end);
  }
  return { head, lines };
}

/** A flat map of `KEY: value` lines, quotes removed. */
function flatMap(lines: string[]): Record<string, string> {
  return Object.fromEntries(
    lines.map((line) => {
      const match = /^\s*([\w<]+):\s*(.*)$/.exec(line);
      if (!match) throw new Error(`docker-compose.yml: "${line.trim()}" is not KEY: value`);
      return [match[1]!, match[2]!.replace(/^"(.*)"$/, '$1')];
    }),
  );
}

/** Compose's `${NAME:-default}` as it resolves when NAME is not set in the environment. */
const interpolateUnset = (value: string) => value.replace(/\$\{\w+:-([^}]*)\}/g, '$1');

/** What the container of a service gets: the image's ENV, then the service's environment. */
function containerEnv(service: string): Record<string, string> {
  const appEnvBlock = block(['x-app-env']);
  expect(appEnvBlock.head).toBe('x-app-env: &app-env');
  const appEnv = flatMap(appEnvBlock.lines);
  const environment = block(['services', service, 'environment']);
  const own = environment.head === 'environment: *app-env' ? { '<<': '*app-env' } : flatMap(environment.lines);
  expect(own['<<'], `${service} takes the shared x-app-env settings`).toBe('*app-env');
  const { '<<': _merged, ...rest } = own;
  const resolved = Object.fromEntries(Object.entries({ ...appEnv, ...rest }).map(([k, v]) => [k, interpolateUnset(v)]));
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
      expect(block(['x-app-env']).lines.join('\n')).toMatch(/^\s*AUTH_SECRET: \$\{AUTH_SECRET:-CHANGE-ME-[^}]+\}$/m);
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
