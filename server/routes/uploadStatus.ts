import { attemptsUsed } from '../db/jobQueue.ts';
import { listJobs, listOutputs } from '../db/records.ts';
import type { Db } from '../db/database.ts';
import type { Upload } from '../db/schema.ts';
import { tusPath } from '../tusServer.ts';

/** The download URL of an upload's original or output (a signed link when tokens are on). */
export type LinkTo = (id: string, name: string) => string;

/** The JSON a client reads to learn where its upload stands (GET /api/uploads/:id, and each event of its stream). */
export async function uploadStatus(db: Db, upload: Upload, baseUrl: string, linkTo: LinkTo, eventsLink: (id: string) => string) {
  const id = upload.id;
  const [jobs, outputs] = await Promise.all([listJobs(db, id), listOutputs(db, id)]);
  const self = `${baseUrl}/api/uploads/${id}`;
  const ready = upload.status === 'ready';
  const inspect = jobs.find((j) => j.kind === 'inspect');
  return {
    id: upload.id,
    owner: upload.owner,
    status: upload.status,
    reason: upload.reason,
    filename: upload.safe_filename,
    claimedType: upload.claimed_type,
    detectedType: upload.detected_type,
    size: upload.size,
    offset: upload.offset,
    sha256: upload.sha256,
    scan: scanOf(inspect),
    media: upload.media,
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
      error: j.last_error,
    })),
    outputs: outputs.map((o) => ({
      name: o.name,
      contentType: o.content_type,
      size: o.size,
      width: o.width,
      height: o.height,
      url: ready ? linkTo(id, o.name) : null,
    })),
    links: {
      self,
      upload: upload.status === 'uploading' ? `${baseUrl}${tusPath}/${id}` : null,
      original: ready ? linkTo(id, 'original') : null,
      // Signed like the downloads, since a browser's EventSource cannot send Authorization.
      events: eventsLink(id),
    },
  };
}

/** The verdict once inspected; `waiting` while the inspection waits for an unreachable clamd. */
function scanOf(inspect: Awaited<ReturnType<typeof listJobs>>[number] | undefined): string | null {
  if (!inspect) return null;
  if (inspect.status === 'done') return (inspect.result?.scan as { status?: string } | undefined)?.status ?? null;
  return inspect.waiting_since ? 'waiting' : null;
}

export type UploadStatusBody = NonNullable<Awaited<ReturnType<typeof uploadStatus>>>;
