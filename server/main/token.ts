import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { privateSigningKey, signToken, type SigningKey, type TokenRequest } from '../auth/signToken.ts';
import { parseDuration, parseSize } from '../infra/settings/config.ts';

const usage = `usage: npm run --silent token -- --owner <sub> [--ttl 1h] [--max-size 20MiB] [--types image/jpeg,image/png] [--private-key FILE]

Prints a token for this server, signed with AUTH_SECRET, or with the private key in FILE when the
server verifies with AUTH_PUBLIC_KEY. AUTH_ISSUER and AUTH_AUDIENCE, when set, go into iss and aud.`;

/** A mistake in the flags or the environment: said on stderr with the usage, exit 1. */
class UsageError extends Error {}

/** `--help`: the usage on stdout, exit 0. */
class HelpWanted extends Error {}

type Env = Record<string, string | undefined>;

function tokenRequest(args: string[], env: Env): { key: SigningKey; request: TokenRequest } {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        owner: { type: 'string' },
        ttl: { type: 'string', default: '1h' },
        'max-size': { type: 'string' },
        types: { type: 'string' },
        'private-key': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) throw new HelpWanted();
  const owner = values.owner?.trim();
  if (!owner) throw new UsageError('--owner is required (the token\'s sub: who the uploads belong to)');
  if (owner.length > 255) throw new UsageError('--owner: at most 255 characters');
  const ttlMs = parseDuration(values.ttl);
  if (ttlMs === undefined || ttlMs < 1000) throw new UsageError(`--ttl: "${values.ttl}" is not a duration of at least 1s (e.g. 15m, 1h, 7d)`);
  const maxSize = values['max-size'] === undefined ? undefined : parseSize(values['max-size']);
  if (values['max-size'] !== undefined && !(maxSize !== undefined && maxSize >= 1)) {
    throw new UsageError(`--max-size: "${values['max-size']}" is not a size of at least 1 byte (e.g. 20MiB, 500MB)`);
  }
  const types = values.types?.split(',').map((t) => t.trim()).filter(Boolean);
  const notMime = types?.find((t) => !/^[\w.+-]+\/[\w.+-]+$/.test(t));
  if (types?.length === 0 || notMime !== undefined) throw new UsageError(`--types: "${notMime ?? values.types}" is not a comma list of MIME types (e.g. image/jpeg,image/png)`);
  return {
    key: signingKey(values['private-key'], env),
    request: {
      owner,
      ttlSeconds: Math.ceil(ttlMs / 1000),
      maxSize,
      types,
      issuer: env.AUTH_ISSUER?.trim() || undefined,
      audience: env.AUTH_AUDIENCE?.trim() || undefined,
    },
  };
}

function signingKey(privateKeyFile: string | undefined, env: Env): SigningKey {
  if (privateKeyFile !== undefined) {
    let pem: string;
    try {
      pem = readFileSync(privateKeyFile, 'utf8');
    } catch (error) {
      throw new UsageError(`--private-key: cannot read ${privateKeyFile} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
    try {
      return privateSigningKey(pem);
    } catch (error) {
      throw new UsageError(`--private-key: ${privateKeyFile} is not a usable PEM private key: ${(error as Error).message}`);
    }
  }
  const secret = env.AUTH_SECRET?.trim();
  if (!secret) {
    const publicKeySetting = ['AUTH_PUBLIC_KEY', 'AUTH_JWKS_URL'].find((name) => env[name]?.trim());
    throw new UsageError(
      publicKeySetting
        ? `the server verifies with ${publicKeySetting}: pass --private-key FILE with the matching private key`
        : 'AUTH_SECRET is not set: set it to the server\'s secret (or pass --private-key FILE when the server verifies with AUTH_PUBLIC_KEY)',
    );
  }
  // The UTF-8 bytes of the string, exactly as the server reads AUTH_SECRET.
  const bytes = new TextEncoder().encode(secret);
  if (bytes.length < 32) throw new UsageError(`AUTH_SECRET: must be at least 32 bytes (HS256), got ${bytes.length}; the server would refuse it too`);
  return { kind: 'secret', secret: bytes };
}

/** `npm run token`: mint a token for curl, tests and the demo page; the token alone on stdout. */
try {
  const { key, request } = tokenRequest(process.argv.slice(2), process.env);
  process.stdout.write(`${await signToken(key, request)}\n`);
} catch (error) {
  if (error instanceof HelpWanted) {
    process.stdout.write(`${usage}\n`);
  } else if (error instanceof UsageError) {
    process.stderr.write(`token: ${error.message}\n\n${usage}\n`);
    process.exitCode = 1;
  } else {
    throw error;
  }
}
