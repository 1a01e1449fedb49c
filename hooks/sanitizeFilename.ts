const MAX_LENGTH = 200;

/**
 * A filename safe to show and to put in Content-Disposition: NFKC-normalised, no path parts,
 * no control or reserved characters, no leading dots, at most 200 characters with the
 * extension kept. Never used to build a storage key.
 */
export function sanitizeFilename(raw: string | null | undefined): string {
  const base = (raw ?? '').normalize('NFKC').split(/[/\\]/).pop() ?? '';
  const cleaned = base
    .replace(/[\u0000-\u001f\u007f<>:"|?*]/g, '_')
    .replace(/\s+/g, ' ')
    .replace(/^[.\s]+|[.\s]+$/g, '');
  if (!cleaned) return 'unnamed_file';
  const chars = [...cleaned];
  if (chars.length <= MAX_LENGTH) return cleaned;
  const dot = cleaned.lastIndexOf('.');
  const ext = dot > 0 && cleaned.length - dot <= 16 ? cleaned.slice(dot) : '';
  return [...cleaned.slice(0, cleaned.length - ext.length)].slice(0, MAX_LENGTH - [...ext].length).join('') + ext;
}

/** The lower-case extension without the dot, or undefined when the name has none. */
export function extensionOf(filename: string): string | undefined {
  const dot = filename.lastIndexOf('.');
  return dot > 0 ? filename.slice(dot + 1).toLowerCase() : undefined;
}
