import type { IncomingMessage } from 'node:http';
import contentDisposition from 'content-disposition';
import { headerInteger } from '../tusWire.ts';
import type { DraftVersion, ProblemType } from './draftVersions.ts';

export const PARTIAL_UPLOAD = 'application/partial-upload';

/** What a draft request asks for, read once from its headers (draft procedures by method and target). */
export type DraftProcedure = 'creation' | 'retrieval' | 'append' | 'cancellation' | 'options';

export interface DraftRequest {
  version: DraftVersion;
  procedure: DraftProcedure;
  /** The request content ends the upload (`Upload-Complete: ?1`, `Upload-Incomplete: ?0`). */
  completes: boolean;
  /** The length the request indicates: `Upload-Length`, or the offset plus `Content-Length` when it completes. */
  length: number | undefined;
  /** The append's `Upload-Offset`. */
  offset: number | undefined;
  /** The filename of `Content-Disposition` at creation. */
  filename: string | undefined;
  /** The creation's Upload-Limit, the same in the 104 and the final answer. */
  creationLimit?: string;
}

/** A draft request refused before anything else sees it. */
export interface DraftRefusal {
  status: number;
  reason: string;
  problem?: ProblemType;
}

/** An sf-boolean: `?1` or `?0`. */
function sfBoolean(value: string | undefined): boolean | undefined {
  const trimmed = value?.trim();
  return trimmed === '?1' ? true : trimmed === '?0' ? false : undefined;
}

/** Whether the request says its content ends the upload; undefined when it does not say (or not legibly). */
function completesUpload(req: IncomingMessage, version: DraftVersion): boolean | undefined {
  const value = sfBoolean(header(req, version.completeness));
  return value === undefined ? undefined : version.completeness === 'Upload-Complete' ? value : !value;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name.toLowerCase()];
  return Array.isArray(value) ? value.join(', ') : value;
}

function filenameOf(value: string | undefined): string | undefined {
  if (!value) return undefined;
  try {
    return contentDisposition.parse(value).parameters.filename;
  } catch {
    // A Content-Disposition that does not parse names no file; the upload goes on unnamed.
    return undefined;
  }
}

/**
 * Reads a draft request at `/files` (`isUpload`: at an upload's URL), or says why it is refused.
 * Methods as tus uses them: creation by POST to the collection, then HEAD, PATCH, DELETE.
 */
export function readDraftRequest(req: IncomingMessage, method: string, isUpload: boolean, version: DraftVersion): DraftRequest | DraftRefusal {
  const complete = version.completeness;
  const procedure: DraftProcedure | undefined =
    method === 'OPTIONS'
      ? 'options'
      : !isUpload
        ? method === 'POST'
          ? 'creation'
          : undefined
        : ({ HEAD: 'retrieval', PATCH: 'append', DELETE: 'cancellation' } as const)[method];
  if (!procedure) return { status: 405, reason: `${method} is not a procedure of the resumable-upload draft at this URL` };
  const request: DraftRequest = { version, procedure, completes: false, length: undefined, offset: undefined, filename: undefined };
  if (procedure === 'options') return request;

  if (procedure === 'retrieval' || procedure === 'cancellation') {
    // Drafts -01..-05: "The request MUST NOT include an `Upload-Offset` or `Upload-Complete` header
    // field. The server MUST reject requests with either of these fields by responding with a
    // `400 (Bad Request)` status code."
    if (version.refusesStateOnHeadAndDelete && (header(req, 'Upload-Offset') !== undefined || header(req, complete) !== undefined)) {
      return { status: 400, reason: `${method} must not carry Upload-Offset or ${complete}` };
    }
    return request;
  }

  const completes = completesUpload(req, version);
  const contentLength = headerInteger(header(req, 'Content-Length'));
  if (procedure === 'creation') {
    // "A client can start a resumable upload from any request that can carry content by including
    // the `Upload-Complete` header field": without it this is no resumable upload, nor tus.
    if (completes === undefined) return { status: 400, reason: `a resumable upload is created with ${complete}: ?0 or ?1` };
    request.completes = completes;
    request.filename = filenameOf(header(req, 'Content-Disposition'));
  } else {
    // "The client MUST indicate the offset of the request content inside the representation data
    // by including the `Upload-Offset` request header field."
    request.offset = headerInteger(header(req, 'Upload-Offset'));
    if (request.offset === undefined) return { status: 400, reason: 'an append needs Upload-Offset (a non-negative integer)' };
    if (completes === undefined && version.appendWithoutCompleteness === 'refused') {
      // Drafts -06..: "The request MUST include the `Upload-Complete` header field."
      return { status: 400, reason: 'an append needs Upload-Complete: ?0 or ?1' };
    }
    request.completes = completes ?? version.appendWithoutCompleteness === 'complete';
    // Drafts -04..: "The request MUST use the `PATCH` method with the `application/partial-upload` media type".
    const type = header(req, 'Content-Type')?.split(';')[0]!.trim().toLowerCase();
    if (version.partialUploadType && type !== PARTIAL_UPLOAD) {
      return { status: 415, reason: `an append needs Content-Type: ${PARTIAL_UPLOAD}${type ? `, not ${type}` : ''}` };
    }
  }

  // "If the request includes the `Upload-Complete` field value set to true and a valid
  // `Content-Length` header field, the request content is the remaining representation data. The
  // length is then the sum of the current offset and the `Content-Length` header field value."
  // "If indicators (1) and (2) are both present in the same request, their indicated lengths MUST match."
  const byContent = request.completes && contentLength !== undefined ? (request.offset ?? 0) + contentLength : undefined;
  const declared = headerInteger(header(req, 'Upload-Length'));
  if (byContent !== undefined && declared !== undefined && byContent !== declared) {
    return { status: 400, reason: `Upload-Length ${declared} disagrees with the ${byContent} bytes this request completes the upload with`, problem: 'inconsistent-upload-length' };
  }
  request.length = declared ?? byContent;
  return request;
}
