import http from 'node:http';
import type { HttpLimits } from '../infra/settings/config.ts';
import { watchRequestDeadlines } from './requestDeadlines.ts';
import { tusPath } from '../../hooks/uploadStatusJson.ts';

/**
 * The http.Server, made here because Koa's `listen` cannot pass `maxHeaderSize`:
 * - MAX_HEADER_SIZE: larger headers get Node's 431;
 * - HEADERS_TIMEOUT: a client trickling its headers (slowloris) gets Node's 408 and is closed;
 * - no Node `requestTimeout` (it would end long uploads): see requestDeadlines.ts instead.
 */
export function createHttpServer(handle: http.RequestListener, limits: HttpLimits): http.Server {
  const server = http.createServer({
    maxHeaderSize: limits.maxHeaderSize,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: 0,
    // Node checks headersTimeout only this often (30 s by default): a quarter keeps the timeout within 25 %.
    connectionsCheckingInterval: Math.max(50, Math.min(limits.headersTimeoutMs / 4, 30_000)),
  });
  server.on('request', watchRequestDeadlines(limits, carriesUploadBytes));
  server.on('request', handle);
  return server;
}

/**
 * PATCH, and a POST on the tus endpoint with an upload body: creation-with-upload ("The Client MAY
 * include parts of the upload in the initial Creation request" with "Content-Type:
 * application/offset+octet-stream"), or a PATCH sent as a POST with X-HTTP-Method-Override.
 */
function carriesUploadBytes(req: http.IncomingMessage): boolean {
  if (req.method === 'PATCH') return true;
  const path = req.url?.split('?')[0] ?? '';
  const type = req.headers['content-type']?.split(';')[0]!.trim().toLowerCase();
  return req.method === 'POST' && type === 'application/offset+octet-stream' && (path === tusPath || path.startsWith(`${tusPath}/`));
}
