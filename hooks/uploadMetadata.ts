import { normaliseMime } from './typePolicy.ts';

/** An upload's metadata as clients send it with tus: keys to values, null for a key without one. */
export type UploadMetadata = Record<string, string | null> | undefined;

/** An upload as the store describes it (@tus/server's uploads are these): what the domain reads of one. */
export interface StoredUpload {
  id: string;
  /** Undefined while the length is deferred. */
  size?: number;
  offset: number;
  metadata?: UploadMetadata;
}

/**
 * Keys clients name the file and its type with, the first present winning: Uppy and tus-js-client
 * send `filename`/`filetype`; some clients send `name`/`type` or `contentType`.
 */
const filenameKeys = ['filename', 'name'];
const typeKeys = ['filetype', 'type', 'contentType'];
const fileKeys = [...filenameKeys, ...typeKeys];

const firstOf = (metadata: UploadMetadata, keys: string[]) => keys.map((key) => metadata?.[key]).find((value) => value != null) ?? null;

export function declaredFile(metadata: UploadMetadata) {
  const type = firstOf(metadata, typeKeys);
  return { filename: firstOf(metadata, filenameKeys), type: type ? normaliseMime(type) : null };
}

/** The upload's own metadata: what the client sent beside the file's name and type (an albumId, a userId). */
export function ownMetadata(metadata: UploadMetadata): Record<string, string | null> {
  return Object.fromEntries(Object.entries(metadata ?? {}).filter(([key]) => !fileKeys.includes(key)));
}

/**
 * The metadata once the app replaced it: the app's keys stand for all of the client's own keys
 * (those it leaves out are dropped). A name or type it gives replaces the client's under every
 * alias, so the app's is the one read; otherwise the client's name and type stay.
 */
export function replaceOwnMetadata(sent: UploadMetadata, replacement: Record<string, string>): NonNullable<UploadMetadata> {
  const replaced = (keys: string[]) => keys.some((key) => Object.hasOwn(replacement, key));
  const kept = Object.entries(sent ?? {}).filter(
    ([key]) => (filenameKeys.includes(key) && !replaced(filenameKeys)) || (typeKeys.includes(key) && !replaced(typeKeys)),
  );
  return { ...Object.fromEntries(kept), ...replacement };
}

/** Far above what tus-js-client and Uppy send (a name, a type, a few app fields); far below a header's limit. */
export const maxMetadataBytes = 4096;
export const maxMetadataKeys = 32;

/** Why metadata is over those bounds, measured as the Upload-Metadata header that carries it; undefined when it is within. */
export function metadataOverBounds(metadata: NonNullable<UploadMetadata>): string | undefined {
  const keys = Object.keys(metadata).length;
  if (keys > maxMetadataKeys) return `${keys} keys; at most ${maxMetadataKeys} are accepted`;
  const bytes = encodedLength(metadata);
  if (bytes > maxMetadataBytes) return `${bytes} bytes as Upload-Metadata; at most ${maxMetadataBytes} are accepted`;
  return undefined;
}

/**
 * What Upload-Metadata can carry back to a client: "The key MUST NOT contain spaces and commas and
 * MUST NOT be empty", and @tus/server takes only ASCII keys.
 */
export function isMetadataKey(key: string): boolean {
  return /^[\x00-\x1f\x21-\x2b\x2d-\x7f]+$/.test(key);
}

/** The length of the Upload-Metadata header carrying `metadata`: "key base64(value)" pairs, joined by commas. */
function encodedLength(metadata: NonNullable<UploadMetadata>): number {
  const pairs = Object.entries(metadata).map(([key, value]) => key.length + (value === null ? 0 : 1 + 4 * Math.ceil(Buffer.byteLength(value) / 3)));
  return pairs.reduce((sum, length) => sum + length, Math.max(0, pairs.length - 1));
}
