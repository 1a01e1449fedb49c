import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { maxKeyLength, parseIdempotencyKey } from '../hooks/idempotencyKey.ts';

/** Cases per property: thousands in every run. */
const numRuns = 5_000;

/** Printable ASCII, what an sf-string may hold. */
const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((code) => String.fromCharCode(code)), minLength: 1, maxLength: maxKeyLength });
/** Characters of a bare key. */
const tokenChars = "!#$%&'*+-.^_`|~:/=0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const token = fc.string({ unit: fc.constantFrom(...tokenChars), minLength: 1, maxLength: maxKeyLength });
/** The characters that make header values interesting, mixed with any others. */
const special = fc.constantFrom('"', '\\', ';', ',', ' ', '\t', '=', 'é', '\u0000', '\u007f', '\uffff', 'a', '1');
const anything = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.string({ unit: special, maxLength: 40 }),
  fc.array(fc.oneof(special, fc.constantFrom('"key"', 'key', ';p=1', ';p="v"')), { maxLength: 12 }).map((pieces) => pieces.join('')),
);

/** An sf-string's serialisation (RFC 8941 4.1.6). */
const serialise = (key: string) => `"${key.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;

describe('the Idempotency-Key header parser (fast-check)', () => {
  it(`any value: a key of 1 to ${maxKeyLength} printable ASCII characters, or a reason it is malformed; never a throw`, () => {
    fc.assert(
      fc.property(anything, (value) => {
        const parsed = parseIdempotencyKey(value)!;
        if ('key' in parsed) {
          expect(parsed.key.length).toBeGreaterThan(0);
          expect(parsed.key.length).toBeLessThanOrEqual(maxKeyLength);
          expect(parsed.key).toMatch(/^[\x20-\x7e]+$/);
        } else {
          expect(parsed.malformed).toMatch(/^Idempotency-Key/);
        }
      }),
      { numRuns },
    );
  });

  it('every sf-string of printable ASCII reads back as its key, with spaces around it and parameters after it', () => {
    fc.assert(
      fc.property(printable, fc.constantFrom('', ' ', '  '), fc.constantFrom('', ';a', ';a=1', ';a="x;y"', ';a=1;b=?0'), (key, space, parameters) => {
        expect(parseIdempotencyKey(`${space}${serialise(key)}${parameters}${space}`)).toEqual({ key });
      }),
      { numRuns },
    );
  });

  it('a bare token is its own key, the same as the quoted string', () => {
    fc.assert(
      fc.property(token, (key) => {
        expect(parseIdempotencyKey(key)).toEqual({ key });
        expect(parseIdempotencyKey(serialise(key))).toEqual({ key });
      }),
      { numRuns },
    );
  });

  it('two fields (joined by a comma), an inner list, an empty or too long key are malformed', () => {
    fc.assert(
      fc.property(printable, printable, (a, b) => {
        expect(parseIdempotencyKey(`${serialise(a)}, ${serialise(b)}`)).toHaveProperty('malformed');
        expect(parseIdempotencyKey(`(${serialise(a)})`)).toHaveProperty('malformed');
      }),
      { numRuns },
    );
    expect(parseIdempotencyKey('""')).toHaveProperty('malformed');
    expect(parseIdempotencyKey('')).toHaveProperty('malformed');
    expect(parseIdempotencyKey(serialise('k'.repeat(maxKeyLength + 1)))).toHaveProperty('malformed');
    expect(parseIdempotencyKey(undefined)).toBeUndefined();
  });
});
