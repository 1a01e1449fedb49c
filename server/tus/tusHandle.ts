import type { IncomingMessage, ServerResponse } from 'node:http';
import { finished, type Readable } from 'node:stream';
import type { Server } from '@tus/server';
import { NodeRequest, sendNodeResponse } from 'srvx/node';
import { openCaller, type Caller } from '../auth/verifyToken.ts';
import type { Upload, UploadLimits, UploadPart } from '../infra/db/schema.ts';
import type { ConcatCreation } from './tusConcatenation.ts';
import { databaseRetryAfterSeconds } from '../infra/db/databaseUnavailable.ts';
import { declaredBodyLength, runStoreRequest } from '../infra/store/storeRequest.ts';

/** What @tus/server's hooks need to know of the Koa request behind the web Request they see. */
export interface TusSender {
  caller: Caller;
  /** The client's address as Koa sees it (ctx.ip: X-Forwarded-For only when behind a proxy). */
  ip: string;
  /** The upload the request names, as tusUploadAccess read it (HEAD, PATCH, DELETE). */
  upload?: Upload;
  /** The limits uploadCreate settled on for the upload this request creates (its token's, narrowed by the app). */
  limits?: UploadLimits;
  /** Told once @tus/server has created the upload, before it reads the body (the IETF draft's 104). */
  onCreated?: (url: string, sender: TusSender) => void;
  /** Rewrites @tus/server's answer before it is sent (the IETF draft's requests get the draft's answers). */
  adapt?: (response: Response, sender: TusSender) => Promise<Response>;
  /** Or the partial upload (concatenation) it names. */
  partial?: UploadPart;
  /** A creation of the concatenation extension, as tusConcatenation checked it. */
  concat?: ConcatCreation;
}

const senders = new WeakMap<Request, TusSender>();

export function senderOf(request: Request): TusSender {
  return senders.get(request) ?? { caller: openCaller, ip: '' };
}

/** Bytes a middleware already read off a request's body (to check them), for @tus/server to get first. */
const readAhead = new WeakMap<IncomingMessage, Buffer>();

export function replayReadAhead(req: IncomingMessage, head: Buffer): void {
  if (head.length > 0) readAhead.set(req, head);
}

/** A body that stands in for the socket's (a checksummed body, verified, from its temp file). */
const replacedBodies = new WeakMap<IncomingMessage, Readable>();

export function replaceBody(req: IncomingMessage, body: Readable): void {
  replacedBodies.set(req, body);
}

/** The body @tus/server gets: the socket's, or what replaced it. */
export function requestBody(req: IncomingMessage): Readable {
  return replacedBodies.get(req) ?? req;
}

/**
 * `tus.handle(req, res)`, but the request body reaches @tus/server as the socket's own chunks.
 * srvx's Readable.toWeb() copies every chunk, which doubled the garbage per uploaded byte and
 * cost ~0.5 s of CPU per GiB (test/bench/layers.ts).
 */
export async function handleTus(tus: Server, req: IncomingMessage, res: ServerResponse, sender: TusSender): Promise<void> {
  const request = new NodeRequest({ req, res });
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    Object.defineProperty(request, 'body', { value: bodyStream(req), configurable: true });
  }
  const answer = await runStoreRequest(tus.datastore, declaredBodyLength(req.headers), () => tusRequest(tus, request, sender));
  const response = sender.adapt ? await sender.adapt(answer, sender) : answer;
  // The tus server's 503s (createTusServer's onResponseError) are all "the database is away; come back".
  if (response.status === 503) response.headers.set('Retry-After', String(databaseRetryAfterSeconds));
  // srvx waits for res.end()'s callback, which never comes once the connection is gone (the
  // client dropped it, or a stopping server closed it): the request would never be over.
  await Promise.race([sendNodeResponse(res, response), new Promise<void>((resolve) => finished(res, () => resolve()))]);
}

/** A request to @tus/server for `sender`: the client's own, or one the server makes on its behalf. */
export function tusRequest(tus: Server, request: Request, sender: TusSender): Promise<Response> {
  senders.set(request, sender);
  return tus.handleWeb(request);
}

/** Readable.toWeb() for a request, without the copy: same backpressure, end and errors; read-ahead bytes first. */
function bodyStream(request: IncomingMessage): ReadableStream<Uint8Array> {
  const req = requestBody(request);
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
        const head = readAhead.get(request);
        if (head) c.enqueue(head);
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
