import type { Upload } from '@tus/utils';
import { createUpload } from '../server/db/records.ts';
import type { UploadLimits } from '../server/db/schema.ts';
import type { HookContext } from './hookContext.ts';
import { sanitizeFilename } from './sanitizeFilename.ts';
import { narrowPolicy, normaliseMime, refuseDeclared } from './typePolicy.ts';

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

/** Who creates an upload: its owner (null when the server runs open) and what their token allows. */
export interface Creator {
  owner: string | null;
  limits: UploadLimits;
}

/**
 * Before the upload exists: refuse an empty file, and a declared type, extension or length the
 * policy (narrowed by the creator's token) does not allow, so nobody sends 500 MiB to be told
 * no; then record the upload as `uploading`, within its owner's quota.
 */
export async function uploadCreate(context: HookContext, upload: Upload, creator: Creator): Promise<{ metadata: Upload['metadata'] }> {
  const { config, log } = context;
  // Postgres text and jsonb cannot hold NUL: the record gets U+FFFD, the store keeps what was sent.
  const metadata = withoutNul(upload.metadata);
  const { filename, type } = declaredFile(metadata);
  const safeFilename = sanitizeFilename(filename);
  const limits = creator.limits;
  const refuse = (status: number, reason: string): never => {
    log.info({ upload: upload.id, owner: creator.owner, filename: safeFilename, type, size: upload.size, reason }, 'upload refused');
    throw { status_code: status, body: `Upload refused: ${reason}\n` } satisfies TusError;
  };
  if (upload.size === 0) refuse(400, 'the file is empty (Upload-Length: 0); an empty file is never a valid photo, video or document');
  if (limits.maxSize !== undefined && upload.size !== undefined && upload.size > limits.maxSize) {
    refuse(413, `${upload.size} bytes is over the ${limits.maxSize}-byte limit of this token`);
  }
  const refusal = refuseDeclared(narrowPolicy(config.typePolicy, limits), { filename: safeFilename, type: type ?? undefined, size: upload.size });
  if (refusal) refuse(refusal.status, refusal.reason);
  const overQuota = await createUpload(
    context.db,
    {
      id: upload.id,
      owner: creator.owner,
      filename,
      safe_filename: safeFilename,
      claimed_type: type,
      size: upload.size ?? null,
      storage_key: upload.id,
      status: 'uploading',
      tus_metadata: JSON.stringify(metadata ?? {}),
      limits: JSON.stringify(limits),
      expires_at: new Date(Date.now() + config.uploadExpiresAfterMs),
    },
    config.quotas,
  );
  if (overQuota?.quota === 'uploads in flight') {
    refuse(403, `quota exceeded: QUOTA_UPLOADS_IN_FLIGHT allows ${overQuota.limit} unfinished uploads at once; finish or delete one first`);
  }
  if (overQuota?.quota === 'bytes') {
    refuse(413, `quota exceeded: QUOTA_BYTES allows ${overQuota.limit} stored bytes, ${overQuota.used} are in use`);
  }
  log.info({ upload: upload.id, owner: creator.owner, filename: safeFilename, type, size: upload.size }, 'upload created');
  return { metadata: upload.metadata };
}

function withoutNul(metadata: Upload['metadata']): Upload['metadata'] {
  return metadata && Object.fromEntries(Object.entries(metadata).map(([key, value]) => [key, value?.replaceAll('\0', '\uFFFD') ?? null]));
}
