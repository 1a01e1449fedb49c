// The two clients of the bench. Both send a slice of one source file on disk (page cache),
// never a Buffer of the whole file: the bench process stays small whatever the size.
//  - tusUpload: tus-js-client, as a Node app would use it, against the real server.
//  - plainUpload: node:http doing the same two requests against the bare server.
//  - postWhole: node:http sending the same body as one plain POST (the seed's FastAPI endpoint).
// Both tus clients make the same requests: one POST (create) and then ONE PATCH carrying the whole slice
// (tus-js-client's chunkSize is left at Infinity), read with fs.ReadStream's 64 KiB chunks.
import { createReadStream } from 'node:fs';
import http from 'node:http';
import { pipeline } from 'node:stream/promises';
import * as tus from 'tus-js-client';
import { sleep } from './processes.ts';

export interface Slice {
  file: string;
  start: number;
  length: number;
}

/** Uploads `slice` with tus-js-client; resolves with the upload URL. */
export function tusUpload(baseUrl: string, slice: Slice, filename: string): Promise<string> {
  // tus-js-client reads only `path`, `start` and `end` from an fs.ReadStream (its FileSource)
  // and opens its own ReadStream for the PATCH body; this one is destroyed unread.
  const source = createReadStream(slice.file, { start: slice.start, end: slice.start + slice.length - 1 });
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(source as unknown as Buffer, {
      endpoint: `${baseUrl}/files/`,
      chunkSize: Infinity,
      retryDelays: [],
      storeFingerprintForResuming: false,
      metadata: { filename, filetype: 'application/octet-stream' },
      onSuccess: () => resolve(upload.url!),
      onError: reject,
    });
    upload.start();
  });
}

/**
 * The same POST + single PATCH with node:http; resolves with the upload URL. With `filename`
 * it sends tus-js-client's Upload-Metadata too (the real server wants it; the bare one ignores it).
 */
export async function plainUpload(baseUrl: string, slice: Slice, filename?: string): Promise<string> {
  const url = await createUpload(baseUrl, slice.length, filename);
  await patchUpload(url, slice);
  return url;
}

/** The POST that creates an upload of `length` bytes; resolves with its URL. */
export async function createUpload(baseUrl: string, length: number, filename?: string): Promise<string> {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const metadata: Record<string, string> = filename ? { 'Upload-Metadata': `filename ${b64(filename)},filetype ${b64('application/octet-stream')}` } : {};
  const created = await send(`${baseUrl}/files`, 'POST', { 'Upload-Length': String(length), 'Content-Length': '0', ...metadata });
  if (created.status !== 201 || !created.location) throw new Error(`POST answered ${created.status}`);
  return new URL(created.location, baseUrl).toString();
}

/** One PATCH carrying the whole slice from offset 0. */
export async function patchUpload(url: string, slice: Slice): Promise<void> {
  const patched = await send(
    url,
    'PATCH',
    { 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream', 'Content-Length': String(slice.length) },
    readSlice(slice),
  );
  if (patched.status !== 204 || patched.offset !== String(slice.length)) {
    throw new Error(`PATCH answered ${patched.status} with Upload-Offset ${patched.offset}, expected ${slice.length}`);
  }
}

/** One plain POST carrying the whole slice (the seed's FastAPI endpoint, seedFastapi.py). */
export async function postWhole(url: string, slice: Slice, filename: string): Promise<void> {
  const posted = await send(url, 'POST', { 'Content-Type': 'application/octet-stream', 'Content-Length': String(slice.length), 'X-Filename': filename }, readSlice(slice));
  if (posted.status !== 200) throw new Error(`POST ${url} answered ${posted.status}`);
}

const readSlice = (slice: Slice) => createReadStream(slice.file, { start: slice.start, end: slice.start + slice.length - 1 });

/** One tus request with node:http, `body` piped in; resolves when the answer has been read. */
export function send(
  url: string,
  method: string,
  headers: Record<string, string>,
  body?: NodeJS.ReadableStream,
): Promise<{ status: number; location: string | undefined; offset: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: { 'Tus-Resumable': '1.0.0', ...headers } }, (res) => {
      res.resume();
      res.once('end', () =>
        resolve({ status: res.statusCode ?? 0, location: res.headers.location, offset: res.headers['upload-offset'] as string | undefined }),
      );
      res.once('error', reject);
    });
    req.once('error', reject);
    if (body) pipeline(body, req).catch(reject);
    else req.end();
  });
}

/** Waits until the inspect job is done with an upload, then deletes it (bytes and all). */
export async function settleAndDelete(baseUrl: string, id: string): Promise<void> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    const res = await fetch(`${baseUrl}/api/uploads/${id}`);
    if (!res.ok) throw new Error(`status of ${id}: ${res.status} ${await res.text()}`);
    const { status } = (await res.json()) as { status: string };
    if (!['uploading', 'received', 'inspecting', 'processing'].includes(status) || process.env.BENCH_RUN_JOBS === 'false') break;
    if (Date.now() > deadline) throw new Error(`upload ${id} still ${status} after 180 s`);
    await sleep(100);
  }
  const res = await fetch(`${baseUrl}/api/uploads/${id}`, { method: 'DELETE' });
  await res.arrayBuffer();
  if (!res.ok) throw new Error(`DELETE ${id}: ${res.status}`);
}
