import type { IncomingMessage } from 'node:http';
import { Metadata } from '@tus/utils';
import fc from 'fast-check';
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { sanitizeFilename } from '../hooks/sanitizeFilename.ts';
import { declaredFile, isMetadataKey, maxMetadataBytes, maxMetadataKeys, metadataOverBounds, ownMetadata } from '../hooks/uploadMetadata.ts';
import { bearerToken } from '../server/auth/authenticate.ts';
import { createLinkSigner } from '../server/auth/signedLinks.ts';
import { createTokenVerifier } from '../server/auth/verifyToken.ts';
import { requestedRange } from '../server/http/sendFile.ts';
import { loadConfig } from '../server/infra/settings/config.ts';
import { parseChecksum } from '../server/tus/extensions/checksum.ts';
import { readUploadConcat } from '../server/tus/extensions/concatenation.ts';
import { readDraftRequest } from '../server/tus/ietfDraft/draftRequest.ts';
import { draftVersionOf, draftVersions } from '../server/tus/ietfDraft/draftVersions.ts';
import { headerInteger } from '../server/tus/tusWire.ts';
import { fuzzParameters } from './support/fuzzRuns.ts';
import { hostileString } from './support/hostileStrings.ts';
import { testAuthSecret } from './support/tokens.ts';

/**
 * Property-based fuzzing of every parser of client input, called directly: FUZZ_RUNS cases per
 * property (see test/support/fuzzRuns.ts). Each one: no input throws, and what comes out holds
 * what the code after it relies on; valid values read back as what was written.
 */

const metadataValue = fc.string({ unit: 'binary', maxLength: 200 });
// @tus/utils refuses a key that names a property of Object.prototype ("constructor", "toString") as a duplicate: see 'keys @tus/utils refuses'.
const metadataKey = fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 20 }).filter((key) => isMetadataKey(key) && !(key in {}));

describe('Upload-Metadata (as @tus/server parses it, and what the server reads of it)', () => {
  it('any header value either parses or is refused; what parses names a safe file and stays within its bounds or says why not', () => {
    fc.assert(
      fc.property(hostileString, (header) => {
        let metadata: Record<string, string | null>;
        try {
          metadata = Metadata.parse(header);
        } catch {
          return; // @tus/server answers 400
        }
        const { filename, type } = declaredFile(metadata);
        const safe = sanitizeFilename(filename);
        expect(safe).not.toMatch(/^\.|[/\\\u0000-\u001f\u007f]/);
        expect(Buffer.byteLength(safe)).toBeLessThanOrEqual(255);
        if (type !== null) expect(type).toBe(type.toLowerCase());
        expect(Object.keys(ownMetadata(metadata)).every(isMetadataKey)).toBe(true);
        metadataOverBounds(metadata);
      }),
      fuzzParameters(),
    );
  });

  it('metadata written as tus clients write it reads back the same, and its bounds are those of the header that carries it', () => {
    fc.assert(
      fc.property(fc.dictionary(metadataKey, fc.option(metadataValue, { nil: null }), { maxKeys: 40, noNullPrototype: true }), (metadata) => {
        const header = Metadata.stringify(metadata);
        // @tus/utils reads an empty value ("key ", as tus-js-client writes it) as no value.
        const read = Object.fromEntries(Object.entries(metadata).map(([key, value]) => [key, value || null]));
        // …and refuses a header that is only whitespace (keys may be tabs).
        if (header.trim() !== '') expect(Metadata.parse(header)).toEqual(read);
        const within = Object.keys(metadata).length <= maxMetadataKeys && Buffer.byteLength(header) <= maxMetadataBytes;
        expect(metadataOverBounds(metadata) === undefined).toBe(within);
      }),
      fuzzParameters(),
    );
  });

  it('keys @tus/utils refuses: the names of Object.prototype properties (a known limit, answered 400 and never stored)', () => {
    for (const key of ['constructor', 'toString', 'hasOwnProperty']) expect(() => Metadata.parse(`${key} eA==`)).toThrow();
  });

  it('a filename of any characters is made safe: no path, no control characters, no leading dot, at most 255 bytes, never empty', () => {
    const longGrapheme = fc.integer({ min: 1, max: 300 }).map((n) => `e${'\u0301'.repeat(n)}`);
    const name = fc.oneof(hostileString, fc.array(fc.oneof(hostileString, longGrapheme), { maxLength: 4 }).map((parts) => parts.join('')));
    fc.assert(
      fc.property(name, fc.constantFrom('', '.jpg', '.tar.gz', '.'), (base, ext) => {
        const safe = sanitizeFilename(base + ext);
        expect(safe.length).toBeGreaterThan(0);
        expect(safe).not.toMatch(/^[.\s]|[/\\\u0000-\u001f\u007f<>:"|?*]/);
        expect(Buffer.byteLength(safe)).toBeLessThanOrEqual(255);
      }),
      fuzzParameters(),
    );
  });
});

describe('Upload-Offset and Upload-Length', () => {
  it('any value is a non-negative safe integer or nothing', () => {
    fc.assert(
      fc.property(hostileString, (value) => {
        const n = headerInteger(value);
        if (n !== undefined) expect(Number.isSafeInteger(n) && n >= 0).toBe(true);
      }),
      fuzzParameters(),
    );
  });

  it('every integer a client can send reads back, with the whitespace HTTP allows around it', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 999_999_999_999_999 }), fc.constantFrom('', ' ', '\t'), (n, space) => {
        expect(headerInteger(`${space}${n}${space}`)).toBe(n);
      }),
      fuzzParameters(),
    );
  });
});

describe('Upload-Concat', () => {
  it('any value is partial, a final naming URLs without spaces, or a reason', () => {
    fc.assert(
      fc.property(hostileString, (header) => {
        const concat = readUploadConcat(header);
        if (typeof concat === 'string') {
          expect(concat.length).toBeGreaterThan(0);
          return;
        }
        if (concat.kind === 'partial') {
          expect(header).toBe('partial');
          return;
        }
        expect(concat.urls.length).toBeGreaterThan(0);
        for (const url of concat.urls) expect(url).toMatch(/^[^ ]+$/);
      }),
      fuzzParameters(),
    );
  });

  it('a final written as tus-js-client writes it names its URLs in order', () => {
    const url = fc.oneof(fc.webUrl(), fc.webPath().filter((p) => p.length > 0)).filter((u) => !u.includes(' '));
    fc.assert(
      fc.property(fc.array(url, { minLength: 1, maxLength: 10 }), (urls) => {
        expect(readUploadConcat(`final;${urls.join(' ')}`)).toEqual({ kind: 'final', urls });
      }),
      fuzzParameters(),
    );
  });
});

describe('Upload-Checksum', () => {
  const sizes: Record<string, number> = { md5: 16, sha1: 20, sha256: 32, crc32: 4 };

  it('any value is a supported algorithm with a digest of its length, or a reason', () => {
    fc.assert(
      fc.property(hostileString, (header) => {
        const parsed = parseChecksum(header);
        if (typeof parsed === 'string') {
          expect(parsed.length).toBeGreaterThan(0);
          return;
        }
        expect(parsed.digest.length).toBe(sizes[parsed.algorithm]);
      }),
      fuzzParameters(),
    );
  });

  it('a checksum of each algorithm reads back; one of another length is refused', () => {
    fc.assert(
      fc.property(fc.constantFrom(...Object.keys(sizes)), fc.uint8Array({ maxLength: 40 }), (algorithm, bytes) => {
        const digest = Buffer.from(bytes);
        const parsed = parseChecksum(`${algorithm} ${digest.toString('base64')}`);
        if (digest.length === sizes[algorithm]) expect(parsed).toEqual({ algorithm, digest });
        else expect(typeof parsed).toBe('string');
      }),
      fuzzParameters(),
    );
  });
});

describe("the IETF draft's structured fields", () => {
  const fields = ['upload-complete', 'upload-incomplete', 'upload-offset', 'upload-length', 'content-length', 'content-type', 'content-disposition', 'upload-draft-interop-version'];
  const headers = fc.dictionary(fc.constantFrom(...fields), hostileString, { noNullPrototype: true });

  it('any Upload-Draft-Interop-Version names a version this server speaks, or none', () => {
    fc.assert(
      fc.property(hostileString, (value) => {
        const version = draftVersionOf(value);
        if (version) expect(draftVersions).toContain(version);
      }),
      fuzzParameters(),
    );
    for (const version of draftVersions) expect(draftVersionOf(` ${version.interop} `)).toBe(version);
  });

  it('any request is read or refused with a 4xx, and what is read holds lengths and offsets that are safe integers', () => {
    fc.assert(
      fc.property(
        headers,
        fc.constantFrom('POST', 'HEAD', 'PATCH', 'DELETE', 'OPTIONS', 'GET', 'PUT'),
        fc.boolean(),
        fc.constantFrom(...draftVersions),
        (sent, method, isUpload, version) => {
          const read = readDraftRequest({ headers: sent } as unknown as IncomingMessage, method, isUpload, version);
          if ('status' in read) {
            expect(read.status).toBeGreaterThanOrEqual(400);
            expect(read.status).toBeLessThan(500);
            return;
          }
          for (const n of [read.length, read.offset]) if (n !== undefined) expect(Number.isSafeInteger(n) && n >= 0).toBe(true);
          if (read.filename !== undefined) expect(typeof read.filename).toBe('string');
        },
      ),
      fuzzParameters(),
    );
  });
});

describe('Range (downloads)', () => {
  it('any Range on a file of any size is one range inside it, unsatisfiable, or the whole file', () => {
    fc.assert(
      fc.property(fc.nat({ max: 1_000_000 }), fc.oneof(hostileString, fc.tuple(fc.nat(), fc.nat()).map(([a, b]) => `bytes=${a}-${b}`)), (size, header) => {
        const range = requestedRange(size, header);
        if (range === undefined || range === 'unsatisfiable') return;
        expect(Number.isSafeInteger(range.start) && Number.isSafeInteger(range.end)).toBe(true);
        expect(range.start).toBeGreaterThanOrEqual(0);
        expect(range.start).toBeLessThanOrEqual(range.end);
        expect(range.end).toBeLessThan(size);
      }),
      fuzzParameters(),
    );
  });

  it('a satisfiable single range is the bytes it names, clipped to the file', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000_000 }), fc.nat(), fc.nat(), (size, a, b) => {
        const [first, last] = a <= b ? [a, b] : [b, a];
        const range = requestedRange(size, `bytes=${first}-${last}`);
        expect(range).toEqual(first < size ? { start: first, end: Math.min(last, size - 1) } : 'unsatisfiable');
      }),
      fuzzParameters(),
    );
  });
});

describe('tokens', () => {
  const auth = loadConfig({ AUTH_SECRET: testAuthSecret }).auth;
  if (auth.mode !== 'token') throw new Error('AUTH_SECRET did not configure tokens');
  const verify = createTokenVerifier(auth);
  const key = new TextEncoder().encode(testAuthSecret);

  it('any Authorization header yields its Bearer token or none; a token without whitespace reads back', () => {
    fc.assert(
      fc.property(hostileString, fc.string({ unit: 'binary-ascii', minLength: 1 }).filter((t) => !/\s/.test(t)), (header, token) => {
        const read = bearerToken(header);
        if (read !== undefined) expect(read).toMatch(/^\S+$/);
        expect(bearerToken(`Bearer ${token}`)).toBe(token);
      }),
      fuzzParameters(),
    );
  });

  it('any token that was not signed with the key is refused with a 401, never thrown', async () => {
    const segment = fc.oneof(hostileString, fc.json().map((json) => Buffer.from(json).toString('base64url')));
    const forged = fc.oneof(hostileString, fc.tuple(segment, segment, segment).map((parts) => parts.join('.')));
    await fc.assert(
      fc.asyncProperty(forged, async (token) => {
        const check = await verify(token);
        expect(check).toMatchObject({ refusal: { status: 401 } });
      }),
      fuzzParameters(0.5),
    );
  });

  it('a signed token with claims of any shape gives its owner and the limits it states, or a 401 saying which claim is wrong', async () => {
    const claim = fc.oneof(fc.jsonValue(), fc.constant(undefined));
    await fc.assert(
      fc.asyncProperty(claim, claim, claim, async (sub, maxSize, types) => {
        const now = Math.floor(Date.now() / 1000);
        const payload = Object.fromEntries(Object.entries({ sub, max_size: maxSize, types }).filter(([, v]) => v !== undefined));
        const token = await new SignJWT(payload).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(now + 600).sign(key);
        const check = await verify(token);
        if ('refusal' in check) {
          expect(check.refusal.status).toBe(401);
          return;
        }
        expect(check.caller.owner).toBe(sub);
        if (check.caller.limits.maxSize !== undefined) expect(Number.isSafeInteger(check.caller.limits.maxSize)).toBe(true);
      }),
      fuzzParameters(0.5),
    );
  });

  it('a signed link with any expiry and signature is tampered, expired or valid only as signed', () => {
    const signer = createLinkSigner(Buffer.from(testAuthSecret), 300_000);
    const id = '0123456789abcdef0123456789abcdef';
    fc.assert(
      fc.property(fc.oneof(hostileString, fc.anything()), fc.oneof(hostileString, fc.anything()), fc.string(), (expires, sig, name) => {
        const check = signer.check(id, name, expires, sig);
        expect(check === 'tampered' || check === 'expired').toBe(true);
        const signed = new URLSearchParams(signer.query(id, name));
        expect(signer.check(id, name, signed.get('expires'), signed.get('sig'))).toBe('valid');
        expect(signer.check(id, `${name}x`, signed.get('expires'), signed.get('sig'))).toBe('tampered');
      }),
      fuzzParameters(),
    );
  });
});
