import type { ServerResponse } from 'node:http';
import { finished } from 'node:stream';
import { NodeRequest, sendNodeResponse } from 'srvx/node';
import type { TusRequest } from './tusRequest.ts';

/**
 * The web Request @tus/server is handed for `request`: srvx's NodeRequest (so @tus/server still
 * hears of the socket's errors), with the method, headers and body the extensions settled on.
 * The body reaches @tus/server as the socket's own chunks: srvx's Readable.toWeb() copies every
 * chunk, which doubled the garbage per uploaded byte.
 */
export function engineRequest(request: TusRequest): Request {
  const web = new NodeRequest(request.node);
  const { method, headers } = request.engine;
  const own = { method, headers, ...(method !== 'GET' && method !== 'HEAD' && { body: bodyStream(request) }) };
  for (const [name, value] of Object.entries(own)) Object.defineProperty(web, name, { value, configurable: true });
  return web;
}

/** Sends @tus/server's (or an extension's) answer on the Node response. */
export async function sendAnswer(res: ServerResponse, response: Response): Promise<void> {
  // srvx waits for res.end()'s callback, which never comes once the connection is gone (the
  // client dropped it, or a stopping server closed it): the request would never be over.
  await Promise.race([sendNodeResponse(res, response), new Promise<void>((resolve) => finished(res, () => resolve()))]);
}

/** Readable.toWeb() for the request's body, without the copy: same backpressure, end and errors; read-ahead bytes first. */
function bodyStream({ body, readAhead }: TusRequest): ReadableStream<Uint8Array> {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  body.pause();
  body.on('data', (chunk: Buffer) => {
    controller.enqueue(chunk);
    if ((controller.desiredSize ?? 0) <= 0) body.pause();
  });
  finished(body, (error) => {
    if (!error) return controller.close();
    // A dropped connection reads as an abort to @tus/server, which keeps what was written.
    controller.error(error.code === 'ERR_STREAM_PREMATURE_CLOSE' ? new DOMException('The request was aborted', 'AbortError') : error);
  });
  return new ReadableStream<Uint8Array>(
    {
      start: (c) => {
        controller = c;
        if (readAhead && readAhead.length > 0) c.enqueue(readAhead);
      },
      pull: () => {
        body.resume();
      },
      cancel: (reason) => {
        body.destroy(reason instanceof Error ? reason : undefined);
      },
    },
    new ByteLengthQueuingStrategy({ highWaterMark: body.readableHighWaterMark }),
  );
}
