import { fileTypeFromBuffer } from 'file-type';
import type { TypePolicy } from '../server/infra/settings/config.ts';
import type { HookContext } from './hookContext.ts';
import { refuseDetected } from './typePolicy.ts';

/** file-type's own sample: what it reads of a file to tell its type. */
export const firstBytesSample = 4100;

/** How many first bytes decide an upload of `size` bytes: the sample, or all of a smaller file. */
export function firstBytesWanted(size: number | undefined): number {
  return Math.min(firstBytesSample, size ?? firstBytesSample);
}

/**
 * What file-type reports for a prefix when the rest of a container is past the sample (a zip
 * entry, an ID3 tag, a TIFF directory, an OLE stream): the whole file may well be something
 * else, so only the full inspection may judge these.
 */
const provisional = new Set(['application/zip', 'audio/mpeg', 'image/tiff', 'application/x-cfb']);

export interface DeclaredFile {
  /** The sanitised filename. */
  filename: string;
  claimedType: string | null;
  size: number | undefined;
}

export interface FirstBytesRefusal {
  detectedType: string;
  /** What the bytes are and what was declared, for the client and for `rejected`. */
  reason: string;
}

/**
 * The verdict on an upload's first bytes, by the same rule as the final inspection, but only
 * when file-type definitely recognises them: bytes it does not know are left to that inspection.
 */
export async function refuseFirstBytes(policy: TypePolicy, declared: DeclaredFile, head: Uint8Array): Promise<FirstBytesRefusal | undefined> {
  // file-type throws on some malformed containers: not a definite answer either.
  const detected = await fileTypeFromBuffer(head).catch(() => undefined);
  if (!detected || provisional.has(detected.mime)) return undefined;
  const refusal = refuseDetected(policy, { ...declared, size: declared.size ?? 0 }, detected);
  if (!refusal) return undefined;
  const claimed = declared.claimedType ?? 'no type';
  return { detectedType: detected.mime, reason: `its first bytes are ${detected.mime} (declared ${claimed}, "${declared.filename}"): ${refusal}` };
}

/** An upload whose first bytes were refused: `rejected` with the reason, and none of its bytes kept. */
export async function rejectFromFirstBytes(context: HookContext, uploadId: string, refusal: FirstBytesRefusal): Promise<void> {
  const rejected = await context.lifecycle.move(context.db, uploadId, 'rejected', {
    from: ['uploading'],
    reason: refusal.reason,
    facts: { detected_type: refusal.detectedType },
  });
  // An upload that moved on meanwhile (deleted, expired) is no longer this request's to remove.
  if (!rejected.ok) return;
  await context.storage.removeUpload(uploadId);
}
