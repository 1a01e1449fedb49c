import type { Readable } from 'node:stream';
import type { DataStore } from '@tus/utils';

/** Where stored bytes can be read from when a client asks for them. */
export type Located =
  | { kind: 'file'; path: string; size: number }
  | { kind: 'redirect'; url: string };

/**
 * The store behind the tus endpoint plus what the rest of the server needs from it. Keys are
 * always derived from the server-made upload id: `<id>` for the original, `outputs/<id>/<name>`.
 */
export interface Storage {
  readonly kind: 'folder' | 's3';
  readonly describe: string;
  readonly datastore: DataStore;
  /** Uploads that send their bytes straight to the bucket (S3 only; undefined for the folder). */
  readonly direct: DirectUploads | undefined;
  /** The stored bytes of an upload, as a stream (one read, no buffering). */
  readOriginal(id: string): Promise<Readable>;
  /** Whether the store still holds an upload's whole original (false once it was removed). */
  hasOriginal(id: string): Promise<boolean>;
  /** Up to `length` first bytes an unfinished upload has stored so far (`length` under a part size). */
  readHead(id: string, length: number): Promise<Buffer>;
  /** Up to `length` first bytes of a finished upload (a partial one taken into a final). */
  readOriginalHead(id: string, length: number): Promise<Buffer>;
  /**
   * Fills `target`, an upload just created empty with the parts' summed length, with the parts'
   * bytes in order (tus concatenation). The store then reports `target` complete.
   */
  concatenate(target: string, parts: StoredPart[]): Promise<Concatenated>;
  /**
   * A local file holding the original, for tools that need a seekable file: the folder store's
   * own file (read in place, never written), or a copy streamed into `workDir`.
   */
  originalFile(id: string, workDir: string, signal: AbortSignal): Promise<string>;
  /** Removes an upload's bytes, unfinished parts, tus info and outputs; missing pieces are fine. */
  removeUpload(id: string): Promise<void>;
  /** Removes an upload's outputs only (a job whose upload moved on while it made them); missing ones are fine. */
  removeOutputs(id: string): Promise<void>;
  /**
   * Removes unfinished uploads past their expiry that the store still holds, including those
   * no record points to (the process died before recording them); returns how many.
   */
  sweepExpired(): Promise<number>;
  /**
   * Stores a finished output file under `key`, replacing any earlier one (jobs may run twice).
   * The file is taken over: it may be moved rather than copied.
   */
  storeOutput(key: string, file: string, contentType: string): Promise<void>;
  locate(key: string, download: Download): Promise<Located>;
  /** A small output file (a playlist) whole; rejects with ENOENT / NoSuchKey when there is none. */
  readOutput(key: string): Promise<Buffer>;
  ping(): Promise<void>;
}

/**
 * What direct uploads need of the bucket: the multipart calls the server makes itself, and the
 * URLs and policies it signs for a client to send the bytes with. `key` is always the upload id.
 */
export interface DirectUploads {
  /** Starts a multipart upload of `key`; its UploadId. */
  createMultipart(key: string, contentType: string): Promise<string>;
  /** A URL that PUTs exactly part `partNumber` of that multipart upload, valid `expiresSeconds`. */
  signPart(key: string, uploadId: string, partNumber: number, expiresSeconds: number): Promise<string>;
  /** Every part S3 holds of it (all pages); undefined when S3 knows no such upload (aborted, completed). */
  listParts(key: string, uploadId: string): Promise<DirectPart[] | undefined>;
  completeMultipart(key: string, uploadId: string, parts: readonly { PartNumber: number; ETag: string }[]): Promise<void>;
  /**
   * A presigned POST to the landing object of `key` (`postLandingKey`): exactly this Content-Type,
   * from 1 to `maxBytes` bytes, valid `expiresSeconds`.
   */
  presignPost(key: string, contentType: string, maxBytes: number, expiresSeconds: number): Promise<{ url: string; fields: Record<string, string> }>;
  /** The size of the object `key`, or undefined while there is none. */
  objectSize(key: string): Promise<number | undefined>;
  /** Moves the posted object to `key` inside the bucket (copy, then delete the landing object). */
  takePosted(key: string): Promise<void>;
}

/** A part of a multipart upload, as S3 lists it (and as Uppy's listParts expects it). */
export interface DirectPart {
  PartNumber: number;
  ETag: string;
  Size: number;
}

/** A finished upload of known size that a concatenation reads. */
export interface StoredPart {
  id: string;
  size: number;
}

/** Where a concatenation's bytes went: copied inside the store, or read and written by this process. */
export interface Concatenated {
  copiedInStore: number;
  passedThrough: number;
}

/** How a download is presented: an S3 redirect can set only these two response headers. */
export interface Download {
  filename: string;
  contentType: string;
  disposition: 'attachment' | 'inline';
}

/**
 * Where a presigned POST lands: never the original's own key, since the policy stays valid until it
 * expires and a second POST would replace an object already inspected.
 */
export function postLandingKey(key: string): string {
  return `${key}.post`;
}

export function outputKey(uploadId: string, name: string): string {
  return `outputs/${uploadId}/${name}`;
}

/** `attachment` with an ASCII fallback and the UTF-8 name (RFC 6266 / 5987). */
export function contentDisposition(filename: string, kind: 'attachment' | 'inline' = 'attachment'): string {
  const ascii = filename.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  return `${kind}; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`;
}
