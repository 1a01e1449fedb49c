import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { finished } from 'node:stream';
import type { HttpLimits } from '../infra/settings/config.ts';

/** Whether a request's body is upload bytes (a PATCH, a creation-with-upload POST), which may take hours. */
export type CarriesUploadBytes = (req: IncomingMessage) => boolean;

/**
 * Per-request deadlines, since Node's `requestTimeout` would cut off every long upload too:
 * - a request that carries no upload bytes must have arrived whole within REQUEST_TIMEOUT;
 * - one that does ends after PATCH_IDLE_TIMEOUT without a byte. Its socket is destroyed, which
 *   @tus/server sees as an aborted request: it keeps what was written, and the client resumes
 *   from the offset HEAD reports.
 * Counted from when the headers arrived (HEADERS_TIMEOUT bounds the time before).
 */
export function watchRequestDeadlines(limits: HttpLimits, carriesUploadBytes: CarriesUploadBytes): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    if (req.complete) return;
    const stop = carriesUploadBytes(req)
      ? endWhenIdle(req.socket, limits.patchIdleTimeoutMs)
      : endAfter(limits.requestTimeoutMs, () => refuseUnfinished(req, res, limits.requestTimeoutMs));
    // The body has arrived (or the connection is gone): no deadline is left to keep.
    finished(req, stop);
  };
}

function endAfter(ms: number, onDeadline: () => void): () => void {
  const timer = setTimeout(onDeadline, ms).unref();
  return () => clearTimeout(timer);
}

/** 408 as Node's own requestTimeout answers it, if nothing was answered yet; then the connection goes. */
function refuseUnfinished(req: IncomingMessage, res: ServerResponse, ms: number): void {
  if (req.complete) return;
  if (res.headersSent) {
    req.socket.destroy();
    return;
  }
  const body = `Request Timeout: the request did not arrive whole within REQUEST_TIMEOUT (${ms} ms)\n`;
  res.writeHead(408, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body), Connection: 'close' });
  res.end(body, () => req.socket.destroy());
}

/**
 * Destroys the socket once no byte was read from it for `idleMs`. The socket's byte count is
 * sampled (every quarter of `idleMs`) instead of listening to the body, which must stay paused
 * until @tus/server reads it; so an idle connection ends between 1 and 1.25 × `idleMs`.
 */
function endWhenIdle(socket: Socket, idleMs: number): () => void {
  let bytesSeen = socket.bytesRead;
  let idleSince = Date.now();
  let timer: NodeJS.Timeout;
  const check = () => {
    const now = Date.now();
    if (socket.bytesRead !== bytesSeen) {
      bytesSeen = socket.bytesRead;
      idleSince = now;
    } else if (now - idleSince >= idleMs) {
      socket.destroy();
      return;
    }
    timer = setTimeout(check, Math.max(10, Math.min(idleMs / 4, idleSince + idleMs - now))).unref();
  };
  timer = setTimeout(check, idleMs / 4).unref();
  return () => clearTimeout(timer);
}
