import { attemptsUsed } from '../server/infra/db/jobQueue.ts';
import { listJobs, listOutputs, listWebhookDeliveries } from '../server/infra/db/records.ts';
import type { Db } from '../server/infra/db/database.ts';
import type { JobKind, JobStatus, MediaMetadata, Upload, UploadProtocol, UploadStatus } from '../server/infra/db/schema.ts';
import { entryFiles } from '../processors/outputFiles.ts';
import { withoutSecrets } from './standardWebhookPost.ts';
import { ownMetadata } from './uploadMetadata.ts';

/** Where the tus endpoint is served: the status JSON links an unfinished upload there. */
export const tusPath = '/files';

/** Upload ids as @tus/server makes them (16 random bytes, hex): anything else names no upload. */
export const uploadIdPattern = /^[0-9a-f]{32}$/;

/**
 * How the status JSON's links are made: absolute from `base` (the request's origin, or PUBLIC_URL
 * where there is no request), download links signed with `signQuery` (its `?expires=…&sig=…`)
 * when tokens are on.
 */
export interface StatusLinks {
  base: string;
  signQuery?: (id: string, name: string) => string;
  /** The path segment that opens the folder a multi-file output's link names (see `outputFolderLink`). */
  signFolder?: (id: string, name: string) => string;
}

/**
 * What the path segment of a multi-file output's link (`…/outputs/hls/<grant>/master.m3u8`) is
 * signed for: a name with a slash, which no download has, so neither opens the other.
 */
export function folderLinkName(output: string): string {
  return `${output}/`;
}

/** The path segment in place of a signature when tokens are off. */
export const openFolderGrant = 'open';

/** What an event-stream link (links.events) is signed for: a name no download has, so it opens only the stream. */
export const eventsLinkName = 'events';

/** The status JSON of GET /api/uploads/:id: where an upload stands, what was found and made. */
export interface UploadStatusJson {
  id: string;
  owner: string | null;
  status: UploadStatus;
  reason: string | null;
  /** How the bytes come: `tus` through this server, `s3-multipart` or `s3-post` straight to the bucket. */
  protocol: UploadProtocol;
  filename: string;
  claimedType: string | null;
  detectedType: string | null;
  size: number | null;
  /** Bytes stored so far; a direct upload's stay 0 until it is completed (the server does not see them arrive). */
  offset: number;
  sha256: string | null;
  scan: string | null;
  media: MediaMetadata | null;
  /** The upload's own Upload-Metadata (as the app's AUTHORIZE_URL answer replaced it, if it did), without the file's name and type. */
  metadata: Record<string, string | null>;
  createdAt: Date;
  finishedAt: Date | null;
  readyAt: Date | null;
  expiresAt: Date | null;
  jobs: { kind: JobKind; status: JobStatus; attempts: number; waitingSince: Date | null; progress: number | null; error: string | null }[];
  /** Each webhook delivery of the upload's events: `error` is the last failed attempt's short reason, until one succeeds. */
  webhooks: { url: string; type: string; seq: number; status: JobStatus; attempts: number; error: string | null }[];
  outputs: { name: string; contentType: string; size: number; width: number | null; height: number | null; url: string | null }[];
  /** `events`: GET /api/uploads/:id/events, signed like the downloads (a browser's EventSource cannot send Authorization). */
  links: { self: string; upload: string | null; original: string | null; events: string };
}

/** Builds it from the records alone, so a worker with no request can too (db may be a transaction, to see it as it is there). */
export async function uploadStatusJson(db: Db, upload: Upload, links: StatusLinks): Promise<UploadStatusJson> {
  const id = upload.id;
  const [jobs, webhooks, outputs] = await Promise.all([listJobs(db, id), listWebhookDeliveries(db, id), listOutputs(db, id)]);
  const { base } = links;
  const linkTo = (name: string) => {
    // The files of a multi-file output are named relative to its entry file: signed in the path.
    const entry = entryFiles[name];
    if (entry === undefined) return `${base}/api/uploads/${id}/files/${name}${links.signQuery?.(id, name) ?? ''}`;
    return `${base}/api/uploads/${id}/outputs/${name}/${links.signFolder?.(id, folderLinkName(name)) ?? openFolderGrant}/${entry}`;
  };
  const ready = upload.status === 'ready';
  const inspect = jobs.find((j) => j.kind === 'inspect');
  return {
    id: upload.id,
    owner: upload.owner,
    status: upload.status,
    reason: upload.reason,
    protocol: upload.protocol,
    filename: upload.safe_filename,
    claimedType: upload.claimed_type,
    detectedType: upload.detected_type,
    size: upload.size,
    offset: upload.offset,
    sha256: upload.sha256,
    scan: scanOf(inspect),
    media: upload.media,
    metadata: ownMetadata(upload.tus_metadata),
    createdAt: upload.created_at,
    finishedAt: upload.finished_at,
    readyAt: upload.ready_at,
    expiresAt: upload.status === 'uploading' ? upload.expires_at : null,
    jobs: jobs.map((j) => ({
      kind: j.kind,
      status: j.status,
      attempts: attemptsUsed(j),
      // Set only while the job waits for an unreachable service (settling or a counted retry clears it).
      waitingSince: j.waiting_since,
      progress: j.progress,
      // Written by the job runner as a short reason fit to show; the details are in its logs.
      error: j.last_error,
    })),
    webhooks: webhooks.map((w) => ({
      // The app's address without its query string or credentials: the uploader sees this too.
      url: withoutSecrets(w.url!),
      type: w.type,
      seq: w.seq,
      status: w.status,
      attempts: attemptsUsed(w),
      error: w.status === 'done' ? null : w.last_error,
    })),
    outputs: outputs.map((o) => ({
      name: o.name,
      contentType: o.content_type,
      size: o.size,
      width: o.width,
      height: o.height,
      url: ready ? linkTo(o.name) : null,
    })),
    links: {
      self: `${base}/api/uploads/${id}`,
      // Only a tus upload is resumed at a URL of this server.
      upload: upload.status === 'uploading' && upload.protocol === 'tus' ? `${base}${tusPath}/${id}` : null,
      original: ready ? linkTo('original') : null,
      events: `${base}/api/uploads/${id}/events${links.signQuery?.(id, eventsLinkName) ?? ''}`,
    },
  };
}

/** The verdict once inspected; `waiting` while the inspection waits for an unreachable clamd or store. */
function scanOf(inspect: Awaited<ReturnType<typeof listJobs>>[number] | undefined): string | null {
  if (!inspect) return null;
  if (inspect.status === 'done') return (inspect.result?.scan as { status?: string } | undefined)?.status ?? null;
  return inspect.waiting_since ? 'waiting' : null;
}
