/** Most filesystems' limit on a name (ext4, APFS, NTFS count 255 bytes or units), so a download saves as named. */
const MAX_BYTES = 255;
/** A dotted tail longer than this is part of the name, not an extension worth keeping. */
const MAX_EXTENSION_CHARS = 16;

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/**
 * A filename safe to show and to put in Content-Disposition: NFKC-normalised, no path parts,
 * no control or reserved characters, no leading dots, at most 255 bytes of UTF-8 with the
 * extension kept and no character (nor emoji sequence) split. Never used to build a storage key.
 */
export function sanitizeFilename(raw: string | null | undefined): string {
  const base = (raw ?? '').normalize('NFKC').split(/[/\\]/).pop() ?? '';
  const cleaned = base
    .replace(/[\u0000-\u001f\u007f<>:"|?*]/g, '_')
    .replace(/\s+/g, ' ')
    .replace(/^[.\s]+|[.\s]+$/g, '');
  if (!cleaned) return 'unnamed_file';
  if (Buffer.byteLength(cleaned) <= MAX_BYTES) return cleaned;
  const dot = cleaned.lastIndexOf('.');
  const ext = dot > 0 && [...cleaned.slice(dot)].length <= MAX_EXTENSION_CHARS ? cleaned.slice(dot) : '';
  // A name whose first grapheme alone is too long (a letter under hundreds of combining marks) keeps nothing of its stem.
  const stem = truncateToBytes(cleaned.slice(0, cleaned.length - ext.length), MAX_BYTES - Buffer.byteLength(ext)).trimEnd();
  return (stem || 'unnamed_file') + ext;
}

/** The longest run of whole graphemes from the start of `text` that fits in `maxBytes` of UTF-8. */
function truncateToBytes(text: string, maxBytes: number): string {
  let kept = '';
  let bytes = 0;
  for (const { segment } of graphemes.segment(text)) {
    bytes += Buffer.byteLength(segment);
    if (bytes > maxBytes) break;
    kept += segment;
  }
  return kept;
}

/** The lower-case extension without the dot, or undefined when the name has none. */
export function extensionOf(filename: string): string | undefined {
  const dot = filename.lastIndexOf('.');
  return dot > 0 ? filename.slice(dot + 1).toLowerCase() : undefined;
}
