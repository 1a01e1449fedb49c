import * as tus from 'tus-js-client';
import type { UploadStatusJson as UploadStatusBody } from '../../hooks/uploadStatusJson.ts';

export interface UploadOptions {
  filename?: string;
  filetype?: string;
  chunkSize?: number;
  /** Resume this existing upload instead of creating one. */
  uploadUrl?: string;
  /** Abort (as a dropped connection would) once at least this many bytes were sent. */
  abortAfterBytes?: number;
  /** Extra metadata, or `null` for none at all. */
  metadata?: Record<string, string> | null;
  /** Sent with every tus request (e.g. `Authorization`). */
  headers?: Record<string, string>;
  /** tus-js-client's delays between retries of a failed request; none by default (fail at once). */
  retryDelays?: number[];
  /** Waits this long before each request, to keep an upload of many chunks going for a while. */
  pauseBeforeEachRequestMs?: number;
  /** Told the upload's offset plus the bytes of the running request sent so far, as they go. */
  onProgress?: (bytesSent: number) => void;
  /** Told of every answer the server gave (method and status), e.g. to count resumes (HEAD). */
  onResponse?: (method: string, status: number, location: string | undefined) => void;
  /** tus-js-client's parallelUploads: the file in this many partial uploads, then a final (concatenation). */
  parallelUploads?: number;
}

/** tus-js-client's delays between retries adding up to about a minute (the outage drills' clients). */
export const minuteOfRetries = [0, 1000, 3000, 5000, 10_000, 10_000, 10_000, 10_000, 10_000];

/** Uploads `data` with tus-js-client, the way a browser or Node app would; resolves with the upload URL. */
export function tusUpload(endpoint: string, data: Buffer, options: UploadOptions = {}): Promise<{ url: string; aborted: boolean; sent: number }> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    const metadata =
      options.metadata === null
        ? {}
        : { filename: options.filename ?? 'file.bin', ...(options.filetype ? { filetype: options.filetype } : {}), ...options.metadata };
    const upload: tus.Upload = new tus.Upload(data, {
      endpoint: `${endpoint}/files/`,
      uploadUrl: options.uploadUrl,
      chunkSize: options.chunkSize ?? Infinity,
      retryDelays: options.retryDelays ?? [],
      onBeforeRequest: options.pauseBeforeEachRequestMs ? () => new Promise((r) => setTimeout(r, options.pauseBeforeEachRequestMs)) : undefined,
      metadata,
      headers: options.headers,
      onAfterResponse: options.onResponse ? (req, res) => options.onResponse!(req.getMethod(), res.getStatus(), res.getHeader('Location')) : undefined,
      parallelUploads: options.parallelUploads,
      onProgress: (bytesSent) => {
        sent = bytesSent;
        options.onProgress?.(bytesSent);
        if (options.abortAfterBytes !== undefined && bytesSent >= options.abortAfterBytes) {
          // abort(false) drops the request like a lost connection; the upload stays resumable.
          void upload.abort(false).then(() => resolve({ url: upload.url ?? '', aborted: true, sent }));
        }
      },
      onSuccess: () => resolve({ url: upload.url!, aborted: false, sent }),
      onError: reject,
    });
    upload.start();
  });
}

export function uploadIdOf(url: string): string {
  return url.split('/').pop()!;
}

export async function fetchStatus(baseUrl: string, id: string, headers: Record<string, string> = {}): Promise<UploadStatusBody> {
  const res = await fetch(`${baseUrl}/api/uploads/${id}`, { headers });
  if (!res.ok) throw new Error(`status of ${id}: ${res.status} ${await res.text()}`);
  return (await res.json()) as UploadStatusBody;
}

const settled = new Set(['ready', 'rejected', 'infected', 'failed', 'expired', 'deleted']);

/** Polls the status API until the upload leaves the pipeline (or `timeoutMs` passes). */
export async function waitUntilSettled(baseUrl: string, id: string, timeoutMs = 30_000, headers: Record<string, string> = {}): Promise<UploadStatusBody> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await fetchStatus(baseUrl, id, headers);
    if (settled.has(status.status)) return status;
    if (Date.now() > deadline) throw new Error(`upload ${id} still ${status.status} after ${timeoutMs} ms: ${JSON.stringify(status)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The answer a tus-js-client upload was refused with (the server's status and body), from its DetailedError. */
export async function tusRefusal(upload: Promise<unknown>): Promise<{ status: number; body: string; header: (name: string) => string | undefined }> {
  const error = await upload.then(
    () => {
      throw new Error('the upload was accepted, not refused');
    },
    (e: unknown) => e,
  );
  const response = error instanceof tus.DetailedError ? error.originalResponse : null;
  if (!response) throw error;
  return { status: response.getStatus(), body: response.getBody(), header: (name) => response.getHeader(name) };
}
