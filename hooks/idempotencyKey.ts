/**
 * The `Idempotency-Key` request header (draft-ietf-httpapi-idempotency-key-header): "an Item
 * Structured Header [RFC 8941]. Its value MUST be a String", e.g. `"8e03978e-40d5-43e8-bc93-6894a57f9324"`.
 * A bare token (`8e03978e-…`, as Stripe's clients send it) is taken too: many clients never quote it.
 * Parameters on the item are allowed by RFC 8941 and ignored.
 */

/** The longest key taken, in characters (what payment APIs allow; a UUID is 36). */
export const maxKeyLength = 255;

/** The key a header names, or why it is malformed (a 400). */
export type ParsedKey = { key: string } | { malformed: string };

/** sf-string's unescaped characters (RFC 8941 3.3.3): printable ASCII but DQUOTE and backslash. */
const unescaped = /[\x20\x21\x23-\x5b\x5d-\x7e]/;
/** A bare key: token characters (RFC 9110 tchar, with sf-token's ":" and "/", and base64's "="). */
const bareKey = /^[!#$%&'*+\-.^_`|~0-9A-Za-z:/=]+$/;
/** Parameters after the item (RFC 8941 3.1.2), which say nothing to this server. */
const parameters = /^(;[ ]*[a-z*][a-z0-9_.*-]*(=("([\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"|[^;" ]+))?)*$/;

/**
 * Reads an `Idempotency-Key` field value (`undefined`: no header). Two fields in one request
 * ("Clients MUST NOT include more than one") arrive joined by a comma and are malformed.
 */
export function parseIdempotencyKey(value: string | undefined): ParsedKey | undefined {
  if (value === undefined) return undefined;
  // "When parsing from HTTP fields, implementations MUST [...] discard any leading SP characters"; OWS around the field is not part of it.
  const field = value.replace(/^[ \t]+|[ \t]+$/g, '');
  let key: string;
  let rest: string;
  if (field.startsWith('"')) {
    const read = readString(field);
    if (typeof read === 'string') return { malformed: read };
    ({ key, rest } = read);
  } else {
    const end = field.indexOf(';');
    key = end === -1 ? field : field.slice(0, end);
    rest = end === -1 ? '' : field.slice(end);
    if (!bareKey.test(key)) return { malformed: `Idempotency-Key must be a quoted string ("…") or a bare token, not ${JSON.stringify(value.slice(0, 80))}` };
  }
  if (!parameters.test(rest)) return { malformed: 'Idempotency-Key must be one key: one header field, one string, no list' };
  if (key.length === 0) return { malformed: 'Idempotency-Key is empty' };
  if (key.length > maxKeyLength) return { malformed: `Idempotency-Key is ${key.length} characters; at most ${maxKeyLength} are taken` };
  return { key };
}

/** An sf-string at the start of `field`: its value and what follows, or why it is not one. */
function readString(field: string): { key: string; rest: string } | string {
  let key = '';
  for (let i = 1; i < field.length; i++) {
    const char = field[i]!;
    if (char === '"') return { key, rest: field.slice(i + 1) };
    if (char === '\\') {
      const next = field[++i];
      if (next !== '"' && next !== '\\') return 'Idempotency-Key: a backslash in a string may only escape " or \\';
      key += next;
    } else if (unescaped.test(char)) {
      key += char;
    } else {
      return 'Idempotency-Key: a string holds printable ASCII only';
    }
  }
  return 'Idempotency-Key: the string has no closing quote';
}
