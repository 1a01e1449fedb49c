import type { IncomingMessage, ServerResponse } from 'node:http';
import { finished } from 'node:stream';
import type { Server } from '@tus/server';
import { NodeRequest, sendNodeResponse } from 'srvx/node';
import { openCaller, type Caller } from './auth/verifyToken.ts';
import { databaseRetryAfterSeconds } from './db/databaseUnavailable.ts';

/** Who sent each request @tus/server is handling, for its hooks (which see only the web Request). */
const callers = new WeakMap<Request, Caller>();

export function callerOf(request: Request): Caller {
  return callers.get(request) ?? openCaller;
}

/**
 * `tus.handle(req, res)`, but the request body reaches @tus/server as the socket's own chunks.
 * srvx's Readable.toWeb() copies every chunk, which doubled the garbage per uploaded byte and
 * cost ~0.5 s of CPU per GiB (test/bench/layers.ts).
 */
export async function handleTus(tus: Server, req: IncomingMessage, res: ServerResponse, caller: Caller): Promise<void> {
  const request = new NodeRequest({ req, res });
  callers.set(request, caller);
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    Object.defineProperty(request, 'body', { value: bodyStream(req), configurable: true });
  }
  const response = await tus.handleWeb(request);
  // The tus server's 503s (createTusServer's onResponseError) are all "the database is away; come back".
  if (response.status === 503) response.headers.set('Retry-After', String(databaseRetryAfterSeconds));
  await sendNodeResponse(res, response);
}

/** Readable.toWeb() for a request, without the copy: same backpressure, end and errors. */
function bodyStream(req: IncomingMessage): ReadableStream<Uint8Array> {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  req.pause();
  req.on('data', (chunk: Buffer) => {
    controller.enqueue(chunk);
    if ((controller.desiredSize ?? 0) <= 0) req.pause();
  });
  finished(req, (error) => {
    if (!error) return controller.close();
    // A dropped connection reads as an abort to @tus/server, which keeps what was written.
    controller.error(error.code === 'ERR_STREAM_PREMATURE_CLOSE' ? new DOMException('The request was aborted', 'AbortError') : error);
  });
  return new ReadableStream<Uint8Array>(
    {
      start: (c) => {
        controller = c;
      },
      pull: () => {
        req.resume();
      },
      cancel: (reason) => {
        req.destroy(reason instanceof Error ? reason : undefined);
      },
    },
    new ByteLengthQueuingStrategy({ highWaterMark: req.readableHighWaterMark }),
  );
}
