import type { Upload } from '@tus/utils';
import { createUpload } from '../server/db/records.ts';
import type { HookContext } from './hookContext.ts';
import { sanitizeFilename } from './sanitizeFilename.ts';
import { normaliseMime, refuseDeclared } from './typePolicy.ts';

/** A tus error: @tus/server sends `status_code` and `body` as the response. */
export interface TusError {
  status_code: number;
  body: string;
}

/** Uppy and tus-js-client send `filename`/`filetype`; some clients send `name`/`type`. */
export function declaredFile(metadata: Upload['metadata']) {
  const filename = metadata?.filename ?? metadata?.name ?? null;
  const type = metadata?.filetype ?? metadata?.type ?? metadata?.contentType ?? null;
  return { filename, type: type ? normaliseMime(type) : null };
}

/**
 * Before the upload exists: refuse a declared type, extension or length the policy does not
 * allow (so nobody sends 500 MiB to be told no), then record the upload as `uploading`.
 */
export async function uploadCreate(context: HookContext, upload: Upload): Promise<{ metadata: Upload['metadata'] }> {
  // Postgres text and jsonb cannot hold NUL: the record gets U+FFFD, the store keeps what was sent.
  const metadata = withoutNul(upload.metadata);
  const { filename, type } = declaredFile(metadata);
  const safeFilename = sanitizeFilename(filename);
  const refusal = refuseDeclared(context.config.typePolicy, { filename: safeFilename, type: type ?? undefined, size: upload.size });
  if (refusal) {
    context.log.info({ upload: upload.id, filename: safeFilename, type, size: upload.size, reason: refusal.reason }, 'upload refused');
    throw { status_code: refusal.status, body: `Upload refused: ${refusal.reason}\n` } satisfies TusError;
  }
  await createUpload(context.db, {
    id: upload.id,
    filename,
    safe_filename: safeFilename,
    claimed_type: type,
    size: upload.size ?? null,
    storage_key: upload.id,
    status: 'uploading',
    tus_metadata: JSON.stringify(metadata ?? {}),
    expires_at: new Date(Date.now() + context.config.uploadExpiresAfterMs),
  });
  context.log.info({ upload: upload.id, filename: safeFilename, type, size: upload.size }, 'upload created');
  return { metadata: upload.metadata };
}

function withoutNul(metadata: Upload['metadata']): Upload['metadata'] {
  return metadata && Object.fromEntries(Object.entries(metadata).map(([key, value]) => [key, value?.replaceAll('\0', '\uFFFD') ?? null]));
}
