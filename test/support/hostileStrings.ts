import fc from 'fast-check';

/**
 * Pieces that the parsers of client input look for (separators, prefixes, numbers at and past
 * the limits, base64, structured-field booleans), so that joined at random they make values that
 * are almost valid: those reach deeper into a parser than noise does.
 */
const pieces = [
  ' ', ',', ';', '=', '==', '-', '/', '.', '?1', '?0', '?', '\t', '"', '%', '\\', '*',
  '0', '1', '007', '-1', '1.5', '1e3', '9007199254740991', '9007199254740993', '999999999999999', '99999999999999999999', 'NaN', 'Infinity', '0x10',
  'partial', 'final;', 'final; ', '/files/', 'http://127.0.0.1/files/', '0123456789abcdef0123456789abcdef',
  'sha1', 'sha256', 'md5', 'crc32', 'SHA1', 'AAAA', 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=', 'eA==', 'filename', 'filetype', '__proto__', 'constructor', 'toString',
  'bytes=', 'bytes=0-', 'bytes=-1', 'bytes=0-0,', 'items=',
  'Bearer ', 'bearer  ', 'eyJhbGciOiJIUzI1NiJ9', 'eyJhbGciOiJub25lIn0', 'e30', '..',
  'attachment; filename=', "filename*=UTF-8''", 'form-data',
  '\u0000', '\u00ff', 'é', '𝄞', '\ud800', '\u202e', '\ufeff',
];

/** A value a hostile or broken client might put in a header or a query parameter. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.array(fc.constantFrom(...pieces), { maxLength: 12 }).map((parts) => parts.join('')), weight: 4 },
  { arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 64 }), weight: 2 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 64 }), weight: 1 },
  { arbitrary: fc.string({ maxLength: 4096 }), weight: 1 },
);

/** Bytes as they can arrive on the wire in a header value: any byte but CR and LF, read as latin1 by Node. */
export const wireHeaderValue: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: hostileString.map((value) => Buffer.from(value, 'utf8').toString('latin1').replace(/[\r\n]/g, '')), weight: 3 },
  { arbitrary: fc.uint8Array({ maxLength: 96 }).map((bytes) => Buffer.from(bytes).toString('latin1').replace(/[\r\n]/g, '')), weight: 1 },
);
