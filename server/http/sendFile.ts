import { createReadStream } from 'node:fs';
import type { Context } from 'koa';
import parseRange from 'range-parser';

/**
 * Streams a stored file with single-range support (resumable downloads, video seeking).
 * Several ranges in one request are answered with the whole file, which RFC 9110 allows.
 */
export function sendFile(ctx: Context, file: { path: string; size: number }, headers: Record<string, string>): void {
  ctx.set({ ...headers, 'Accept-Ranges': 'bytes' });
  const etag = headers.ETag;
  if (etag && ctx.get('If-None-Match') === etag) {
    ctx.status = 304;
    return;
  }
  let start = 0;
  let end = file.size - 1;
  const rangeHeader = ctx.get('Range');
  const ifRange = ctx.get('If-Range');
  if (rangeHeader && (!ifRange || ifRange === etag)) {
    const range = requestedRange(file.size, rangeHeader);
    if (range === 'unsatisfiable') {
      ctx.status = 416;
      ctx.set('Content-Range', `bytes */${file.size}`);
      return;
    }
    if (range) {
      ({ start, end } = range);
      ctx.status = 206;
      ctx.set('Content-Range', `bytes ${start}-${end}/${file.size}`);
    }
  }
  ctx.length = file.size === 0 ? 0 : end - start + 1;
  if (ctx.method === 'HEAD') {
    // Headers alone, which Koa sends for a HEAD without a body (a null body would make it a 204).
    if (ctx.status !== 206) ctx.status = 200;
    return;
  }
  if (file.size === 0) {
    ctx.body = '';
    return;
  }
  ctx.body = createReadStream(file.path, { start, end, highWaterMark: 256 * 1024 });
}

/**
 * The one byte range of `size` bytes a Range header asks for; 'unsatisfiable' (416) when none of
 * its ranges overlaps the file; undefined (the whole file) when it is malformed, not in bytes, or
 * asks for several ranges.
 */
export function requestedRange(size: number, header: string): { start: number; end: number } | 'unsatisfiable' | undefined {
  const ranges = parseRange(size, header, { combine: true });
  if (ranges === -1) return 'unsatisfiable';
  if (Array.isArray(ranges) && ranges.type === 'bytes' && ranges.length === 1) return ranges[0]!;
  return undefined;
}
