import { Metadata, type Upload } from '@tus/utils';
import { normaliseMime } from './typePolicy.ts';

type UploadMetadata = Upload['metadata'];

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
  const bytes = Buffer.byteLength(Metadata.stringify(metadata));
  if (bytes > maxMetadataBytes) return `${bytes} bytes as Upload-Metadata; at most ${maxMetadataBytes} are accepted`;
  return undefined;
}

/** Non-empty ASCII without spaces or commas: what Upload-Metadata can carry back to a client. */
export const isMetadataKey: (key: string) => boolean = Metadata.validateKey;
