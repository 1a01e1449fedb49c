/**
 * The interop versions of the IETF draft "Resumable Uploads for HTTP"
 * (draft-ietf-httpbis-resumable-upload) this server speaks, and what differs between them.
 * "Client implementations of draft versions of the protocol MUST send a header field
 * `Upload-Draft-Interop-Version` with the interop version as its value to its requests."
 */
export const interopVersionHeader = 'Upload-Draft-Interop-Version';

export type ProblemType = 'mismatching-upload-offset' | 'completed-upload' | 'inconsistent-upload-length';

export interface DraftVersion {
  interop: number;
  /** The drafts that define it. */
  drafts: string;
  /** -01 says `Upload-Incomplete: ?1` where later drafts say `Upload-Complete: ?0`. */
  completeness: 'Upload-Incomplete' | 'Upload-Complete';
  /**
   * An append without the completeness header: -01 "An upload is considered complete if and only
   * if the server completely and successfully received [a request] with the `Upload-Incomplete`
   * header being omitted or set to false"; -02..-05 complete only with `Upload-Complete: ?1`;
   * from -06 "The request MUST include the `Upload-Complete` header field."
   */
  appendWithoutCompleteness: 'complete' | 'incomplete' | 'refused';
  /** From -04: "The request MUST use the `PATCH` method with the `application/partial-upload` media type". */
  partialUploadType: boolean;
  /** `Upload-Limit` from -04; the lifetime key is `expires` in -04/-05 and `max-age` from -06 ("Rename `expires` limit to `max-age`"). */
  lifetimeLimit: 'expires' | 'max-age' | undefined;
  /** RFC 9457 problem types: offset and completed upload from -04, inconsistent length from -06. */
  problems: ReadonlySet<ProblemType>;
  /**
   * Up to -05 an append that leaves the upload incomplete is answered "with a `201 (Created)`
   * status code" and "The server MUST send the `Upload-Offset` header field in the response";
   * from -06 any 2xx (the drafts' examples: 204).
   */
  appendStatus: 201 | 204;
  /**
   * Up to -05 HEAD and DELETE "MUST NOT include an `Upload-Offset` or `Upload-Complete` header
   * field. The server MUST reject requests with either of these fields by responding with a
   * `400 (Bad Request)` status code."
   */
  refusesStateOnHeadAndDelete: boolean;
  /**
   * An append to a completed upload: -04..-09 "MUST reject the request" (completed-upload, 400);
   * -10/-11 a non-empty one "as an inconsistent length failure", an empty one 410 (completed-upload).
   */
  completedAppend: 'completed-upload' | 'by-length';
}

const problems = (...types: ProblemType[]): ReadonlySet<ProblemType> => new Set(types);

const v3: DraftVersion = {
  interop: 3,
  drafts: '-01',
  completeness: 'Upload-Incomplete',
  appendWithoutCompleteness: 'complete',
  partialUploadType: false,
  lifetimeLimit: undefined,
  problems: problems(),
  appendStatus: 201,
  refusesStateOnHeadAndDelete: true,
  completedAppend: 'completed-upload',
};
const v4: DraftVersion = { ...v3, interop: 4, drafts: '-02', completeness: 'Upload-Complete', appendWithoutCompleteness: 'incomplete' };
const v5: DraftVersion = { ...v4, interop: 5, drafts: '-03' };
const v6: DraftVersion = {
  ...v5,
  interop: 6,
  drafts: '-04, -05',
  partialUploadType: true,
  lifetimeLimit: 'expires',
  problems: problems('mismatching-upload-offset', 'completed-upload'),
};
const v7: DraftVersion = {
  ...v6,
  interop: 7,
  drafts: '-06..-08',
  appendWithoutCompleteness: 'refused',
  lifetimeLimit: 'max-age',
  problems: problems('mismatching-upload-offset', 'completed-upload', 'inconsistent-upload-length'),
  appendStatus: 204,
  refusesStateOnHeadAndDelete: false,
};
const v8: DraftVersion = { ...v7, interop: 8, drafts: '-09..-11', completedAppend: 'by-length' };

export const draftVersions: readonly DraftVersion[] = [v3, v4, v5, v6, v7, v8];
export const supportedInterop = draftVersions.map((v) => v.interop).join(', ');

/** The version a request names; undefined for one this server does not speak (the header's value is an sf-integer). */
export function draftVersionOf(header: string): DraftVersion | undefined {
  const value = header.trim();
  return /^\d{1,3}$/.test(value) ? draftVersions.find((v) => v.interop === Number(value)) : undefined;
}
