import type { AllowedType, TypePolicy } from '../server/infra/settings/config.ts';
import type { UploadLimits } from '../server/infra/db/schema.ts';
import { extensionOf } from './sanitizeFilename.ts';

/**
 * Names clients send for the same type; compared after this, `image/jpg` equals `image/jpeg`.
 * HEIC and HEIF are one family: Uppy in Chromium declares an iPhone photo `image/heif`,
 * file-type calls it `image/heic` (brand `heic`), `image/heif` (brand `mif1`) or a `-sequence`.
 */
const aliases: Record<string, string> = {
  'image/jpg': 'image/jpeg',
  'image/pjpeg': 'image/jpeg',
  'image/x-png': 'image/png',
  'application/x-pdf': 'application/pdf',
  'video/x-m4v': 'video/mp4',
  'image/heif': 'image/heic',
  'image/heic-sequence': 'image/heic',
  'image/heif-sequence': 'image/heic',
  // file-type calls an iPhone's m4a `audio/x-m4a`, an Opus file `audio/ogg; codecs=opus`.
  'audio/x-m4a': 'audio/mp4',
  'audio/m4a': 'audio/mp4',
  'audio/mp3': 'audio/mpeg',
  'audio/x-wav': 'audio/wav',
  'audio/wave': 'audio/wav',
  'audio/vnd.wave': 'audio/wav',
  'audio/opus': 'audio/ogg',
};

/**
 * Containers file-type names by the most they can hold: an Android m4a (brand `isom`, `mp42`)
 * reads as `video/mp4`, every WebM (a browser's voice note too) as `video/webm`. Within a family
 * the upload's claim, else its extension, says which member it is; the audio or video job then
 * checks that the streams bear it out.
 */
const families: string[][] = [
  ['video/mp4', 'audio/mp4'],
  ['video/webm', 'audio/webm'],
];

export function normaliseMime(mime: string): string {
  const bare = mime.split(';')[0]!.trim().toLowerCase();
  return aliases[bare] ?? bare;
}

/** The policy one upload is held to: only the types its limits name, none larger than their size. */
export function narrowPolicy(policy: TypePolicy, limits: UploadLimits): TypePolicy {
  const types = limits.types?.map(normaliseMime);
  return policy
    .filter((t) => !types || types.includes(normaliseMime(t.mime)))
    .map((t) => (limits.maxSize !== undefined && limits.maxSize < t.maxSize ? { ...t, maxSize: limits.maxSize } : t));
}

export function findAllowedType(policy: TypePolicy, mime: string): AllowedType | undefined {
  const wanted = normaliseMime(mime);
  return policy.find((t) => normaliseMime(t.mime) === wanted);
}

/**
 * Why a declared upload (before any byte arrives) breaks the policy, or undefined when it
 * does not. The bytes are checked again after the upload: this only saves a wasted transfer.
 */
export function refuseDeclared(
  policy: TypePolicy,
  declared: { filename: string; type: string | undefined; size: number | undefined },
): { status: 413 | 415; reason: string } | undefined {
  const allowedList = policy.map((t) => t.mime).join(', ');
  const byType = declared.type ? findAllowedType(policy, declared.type) : undefined;
  if (declared.type && !byType) {
    return { status: 415, reason: `type ${declared.type} is not allowed (allowed: ${allowedList})` };
  }
  const ext = extensionOf(declared.filename);
  const byExt = ext ? policy.filter((t) => t.extensions.includes(ext)) : [];
  if (ext && byExt.length === 0) return { status: 415, reason: `extension .${ext} is not allowed` };
  if (byType && ext && !byType.extensions.includes(ext)) {
    return { status: 415, reason: `extension .${ext} does not match type ${byType.mime}` };
  }
  const limit = (byType ? [byType] : byExt).map((t) => t.maxSize);
  const maxSize = limit.length > 0 ? Math.max(...limit) : undefined;
  if (declared.size !== undefined && maxSize !== undefined && declared.size > maxSize) {
    return { status: 413, reason: `${declared.size} bytes is over the ${maxSize}-byte limit for ${byType?.mime ?? `.${ext}`} files` };
  }
  return undefined;
}

/** The size limit that applies to an upload declared this way (largest of what it may be). */
export function limitFor(policy: TypePolicy, declared: { filename: string; type: string | undefined }, fallback: number): number {
  const byType = declared.type ? findAllowedType(policy, declared.type) : undefined;
  if (byType) return Math.min(byType.maxSize, fallback);
  const ext = extensionOf(declared.filename);
  const byExt = ext ? policy.filter((t) => t.extensions.includes(ext)) : [];
  return byExt.length > 0 ? Math.min(Math.max(...byExt.map((t) => t.maxSize)), fallback) : fallback;
}

/**
 * The most bytes an upload declared this way may have: its type's limit in the policy its limits
 * narrowed, within MAX_UPLOAD_SIZE and the token's (or the app's) max size.
 */
export function uploadSizeLimit(
  config: { typePolicy: TypePolicy; maxUploadSize: number },
  limits: UploadLimits,
  declared: { filename: string; type: string | undefined },
): number {
  return limitFor(narrowPolicy(config.typePolicy, limits), declared, Math.min(config.maxUploadSize, limits.maxSize ?? Infinity));
}

/** The allowed type the detected bytes are for this upload: within a family, the member its claim (else its extension) names. */
export function allowedTypeOf(
  policy: TypePolicy,
  upload: { filename: string; claimedType: string | null },
  detectedMime: string,
): AllowedType | undefined {
  const detected = normaliseMime(detectedMime);
  const members = (families.find((f) => f.includes(detected)) ?? [detected]).flatMap((mime) => findAllowedType(policy, mime) ?? []);
  const claimed = upload.claimedType ? normaliseMime(upload.claimedType) : undefined;
  const ext = extensionOf(upload.filename);
  return (
    members.find((t) => normaliseMime(t.mime) === claimed) ??
    members.find((t) => ext !== undefined && t.extensions.includes(ext)) ??
    findAllowedType(policy, detected) ??
    members[0]
  );
}

/**
 * The verdict on the stored bytes: the detected type must be allowed, agree with the claimed
 * type and the extension, and fit its limit. Returns the reason for `rejected`, or undefined.
 */
export function refuseDetected(
  policy: TypePolicy,
  upload: { filename: string; claimedType: string | null; size: number },
  detected: { mime: string; ext: string } | undefined,
): string | undefined {
  if (!detected) return 'the file type could not be recognised from its content';
  const allowed = allowedTypeOf(policy, upload, detected.mime);
  if (!allowed) return `content is ${detected.mime}, which is not allowed`;
  if (upload.claimedType && normaliseMime(upload.claimedType) !== normaliseMime(allowed.mime)) {
    return `content is ${allowed.mime} but the upload claimed ${upload.claimedType}`;
  }
  const ext = extensionOf(upload.filename);
  if (ext && !allowed.extensions.includes(ext)) return `content is ${allowed.mime} but the filename ends in .${ext}`;
  if (upload.size > allowed.maxSize) return `${upload.size} bytes is over the ${allowed.maxSize}-byte limit for ${allowed.mime}`;
  return undefined;
}
