import { createHash } from 'node:crypto';
import { findKeyedUpload, forgetKey, type KeyClaim } from '../server/infra/db/idempotencyKeys.ts';
import type { Upload } from '../server/infra/db/schema.ts';
import type { HookContext } from './hookContext.ts';
import { parseIdempotencyKey } from './idempotencyKey.ts';

/**
 * The Idempotency-Key rule for every way an upload is created (tus POST, a concatenation's final,
 * the IETF draft's creation, direct-to-S3): the same key from the same owner within
 * IDEMPOTENCY_TTL gives the same upload instead of a new one. A creation path:
 * 1. `readIdempotencyKey(context, header, asked)`: a malformed key is a 400 (`idempotencyProblem`);
 *    no header, no rule.
 * 2. `earlierCreation(context, owner, claim)`: `same` → answer with that upload (its current
 *    offset; nothing of this request's body is stored); `different` → 422; `outstanding` → 409.
 * 3. `none` → create with `claim` in the Creator (uploadCreate gives the key to the new upload in
 *    the record's transaction). A creation racing with the same key is refused with
 *    `keyTakenRefusal` (409): look again (step 2), which now finds the winner's upload.
 * 4. A creation that failed after its record (the store refused: a 5xx) calls
 *    `forgetFailedCreation`, so a retry creates anew instead of being given a broken upload.
 * Refusals (4xx) record nothing, so a retry is judged again. Another owner's key never matches.
 */

export type { KeyClaim };

/** The draft's documentation of the errors, linked from every problem body ("a link pointing to relevant documentation"). */
const problemType = 'https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/';

/** What a creation asks for, as its path sees it: the same key must always ask for the same (else 422). */
export type CreationAsked = Record<string, string | number | boolean | null | readonly string[]>;

/** A request's key claim, or the 400 problem for a malformed header; undefined without the header. */
export function readIdempotencyKey({ config }: HookContext, header: string | undefined, asked: CreationAsked): KeyClaim | IdempotencyProblem | undefined {
  const parsed = parseIdempotencyKey(header);
  if (!parsed) return undefined;
  if ('malformed' in parsed) return idempotencyProblem('malformed', parsed.malformed);
  return { key: parsed.key, fingerprint: fingerprintOf(asked), ttlMs: config.idempotencyTtlMs };
}

/** What an earlier creation with the claim's key made, if one did. */
export type EarlierCreation =
  | { kind: 'none' }
  | { kind: 'same'; upload: Upload }
  | { kind: 'different'; upload: Upload; problem: IdempotencyProblem }
  | { kind: 'outstanding'; upload: Upload; problem: IdempotencyProblem };

export async function earlierCreation({ db }: HookContext, owner: string | null, claim: KeyClaim): Promise<EarlierCreation> {
  const found = await findKeyedUpload(db, owner, claim.key);
  if (!found) return { kind: 'none' };
  const { upload, fingerprint } = found;
  if (fingerprint !== claim.fingerprint) {
    const detail = `Idempotency-Key ${JSON.stringify(claim.key)} was sent with a different creation (another length, metadata or Upload-Concat); a key must not be reused for another upload`;
    return { kind: 'different', upload, problem: idempotencyProblem('different', detail) };
  }
  // A final upload is made when its parts are assembled, after its record: until then the creation is still under way.
  if (upload.upload_concat !== null && upload.status === 'uploading') {
    return { kind: 'outstanding', upload, problem: idempotencyProblem('outstanding', `the creation with Idempotency-Key ${JSON.stringify(claim.key)} is still under way; retry shortly`) };
  }
  return { kind: 'same', upload };
}

/** The creation that claimed `claim` for `uploadId` failed after its record: the key is free again. */
export async function forgetFailedCreation({ db, log }: HookContext, owner: string | null, claim: KeyClaim, uploadId: string): Promise<void> {
  await forgetKey(db, owner, claim.key, uploadId).catch((err: unknown) => log.warn({ err, upload: uploadId }, 'forgetting the Idempotency-Key of a failed creation failed'));
}

/** An RFC 9457 problem: its status, and its body for `Content-Type: application/problem+json`. */
export interface IdempotencyProblem {
  status: number;
  body: string;
}

const problems = {
  malformed: { status: 400, title: 'Idempotency-Key is malformed' },
  different: { status: 422, title: 'Idempotency-Key is already used' },
  outstanding: { status: 409, title: 'A request is outstanding for this Idempotency-Key' },
} as const;

export function idempotencyProblem(kind: keyof typeof problems, detail: string): IdempotencyProblem {
  const { status, title } = problems[kind];
  return { status, body: JSON.stringify({ type: problemType, title, status, detail }) };
}

/** The refusal uploadCreate throws when a creation racing with the same key made the upload first (a tus error, as @tus/server sends it). */
export const keyTakenRefusal = { status_code: 409, body: `${idempotencyProblem('outstanding', 'another request with this Idempotency-Key is creating the upload; retry shortly').body}\n` };

/** The same creation, whatever order its fields came in. */
function fingerprintOf(asked: CreationAsked): string {
  const sorted = Object.keys(asked)
    .sort()
    .map((name) => [name, asked[name]]);
  return createHash('sha256').update(JSON.stringify(sorted)).digest('base64url');
}
