import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * Sends `104 (Upload Resumption Supported)` ahead of the final answer. The status line and fields
 * go to the socket as writeProcessing does for 102: ServerResponse's writeInformation, made for
 * this, is newer than the oldest Node this server supports (engines). Skipped where it cannot be
 * sent: once the final head is out, with no socket yet (a pipelined request waits for the one
 * before it), and to HTTP/1.0 ("A server MUST NOT send a 1xx response to an HTTP/1.0 client",
 * RFC 9110 15.2).
 */
export function sendUploadResumptionSupported(req: IncomingMessage, res: ServerResponse, fields: Record<string, string>): boolean {
  const socket = res.socket;
  if (res.headersSent || !socket || socket.destroyed || req.httpVersionMajor !== 1 || req.httpVersionMinor === 0) return false;
  const lines = Object.entries(fields).map(([name, value]) => `${name}: ${value}\r\n`);
  socket.write(`HTTP/1.1 104 Upload Resumption Supported\r\n${lines.join('')}\r\n`, 'latin1');
  return true;
}
