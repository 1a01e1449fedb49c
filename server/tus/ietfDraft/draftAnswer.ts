import { STATUS_CODES } from 'node:http';
import type { DraftVersion, ProblemType } from './draftVersions.ts';
import { interopVersionHeader } from './draftVersions.ts';

/** The titles of the draft's problem types (its examples' wording). */
const problemTitles: Record<ProblemType, string> = {
  'mismatching-upload-offset': 'offset from request does not match offset of resource',
  'completed-upload': 'upload is already completed',
  'inconsistent-upload-length': 'inconsistent length values for upload',
};

/** tus 1.0 fields @tus/server answers with that mean nothing in the draft. */
const tusOnlyFields = ['Tus-Resumable', 'Upload-Metadata', 'Upload-Defer-Length', 'Upload-Expires', 'Upload-Length', 'Upload-Offset'];

/** The completeness field as `version` spells it: `Upload-Complete: ?1`, or -01's `Upload-Incomplete: ?0`. */
export function completenessField(version: DraftVersion, complete: boolean): [string, string] {
  const value = version.completeness === 'Upload-Complete' ? complete : !complete;
  return [version.completeness, value ? '?1' : '?0'];
}

/**
 * The `Upload-Limit` dictionary (from draft -04): the most bytes the upload may have, at least one
 * byte (an empty file is refused), and its remaining lifetime while unfinished.
 */
export function uploadLimitField(version: DraftVersion, maxSize: number, expiresAt: Date | null | undefined): string | undefined {
  if (!version.lifetimeLimit) return undefined;
  const limits = [`max-size=${maxSize}`, 'min-size=1'];
  if (expiresAt) limits.push(`${version.lifetimeLimit}=${Math.max(0, Math.floor((expiresAt.getTime() - Date.now()) / 1000))}`);
  return limits.join(', ');
}

export interface DraftFields {
  offset?: number;
  complete: boolean;
  length?: number;
  limit?: string;
  location?: string;
  more?: Record<string, string>;
}

/**
 * The draft's fields on `headers` (a copy of @tus/server's, which carry CORS): tus's own removed,
 * the draft's state set. Every answer says whether the upload is complete, which from -06 is a
 * MUST: "If the request didn't complete the upload, any response, successful or not, MUST
 * include the `Upload-Complete` header field with a false value".
 */
export function draftHeaders(version: DraftVersion, base: Headers, fields: DraftFields): Headers {
  const headers = new Headers(base);
  for (const name of [...tusOnlyFields, 'Content-Type', 'Content-Length']) headers.delete(name);
  headers.set(interopVersionHeader, String(version.interop));
  headers.set(...completenessField(version, fields.complete));
  if (fields.offset !== undefined) headers.set('Upload-Offset', String(fields.offset));
  if (fields.length !== undefined) headers.set('Upload-Length', String(fields.length));
  if (fields.limit) headers.set('Upload-Limit', fields.limit);
  if (fields.location) headers.set('Location', fields.location);
  for (const [name, value] of Object.entries(fields.more ?? {})) headers.set(name, value);
  return headers;
}

/** An answer of the draft's, with its reason phrase (srvx would leave it empty). */
export function draftResponse(status: number, headers: Headers, body: string | null = null): Response {
  if (body === null && status !== 204) headers.set('Content-Length', '0');
  return new Response(body, { status, statusText: STATUS_CODES[status], headers });
}

/**
 * A refusal: an RFC 9457 problem of the draft's type where `version` defines it, plain text
 * otherwise. `members` are the problem type's extension members (expected and provided offset).
 */
export function draftRefusal(
  version: DraftVersion,
  base: Headers,
  fields: DraftFields,
  status: number,
  reason: string,
  problem?: ProblemType,
  members: Record<string, number> = {},
): Response {
  const headers = draftHeaders(version, base, fields);
  if (problem && version.problems.has(problem)) {
    headers.set('Content-Type', 'application/problem+json');
    const body = { type: `https://iana.org/assignments/http-problem-types#${problem}`, title: problemTitles[problem], detail: reason, ...members };
    return draftResponse(status, headers, JSON.stringify(body));
  }
  headers.set('Content-Type', 'text/plain; charset=utf-8');
  return draftResponse(status, headers, `${reason}\n`);
}
