// The baseline for `npm run bench`: a bare Node HTTP server that speaks just enough tus for
// the bench's plain client (POST creates an empty file, PATCH appends the body at
// Upload-Offset) and stores each PATCH body exactly as @tus/file-store does: the request piped
// into `fs.createWriteStream(path, { flags: 'r+', start: offset })` with that stream's default
// highWaterMark. No framework, no database, no logging: what the real server is measured against.
//
// Run as a child process: BARE_DIR=<dir> node test/bench/bareServer.ts
// Prints one JSON line {"msg":"listening","url":...} on stdout when ready.
//
// BARE_CHAIN adds, one by one, the stream layers the real server puts between the socket and
// the file (test/bench/layers.ts measures each): `pipe` (the default, the baseline), `store`
// (+ @tus/file-store's counting Transform), `web` (+ the Node→web→Node round trip: srvx's
// Readable.toWeb(req), @tus/server's Readable.fromWeb), `tus` (+ @tus/server's PassThrough
// proxy with its POST_RECEIVE 'data' listener and StreamLimiter: the whole writeToStore chain).
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { PassThrough, Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { StreamLimiter } from '@tus/utils';

const dir = process.env.BARE_DIR;
if (!dir) {
  console.error('BARE_DIR is required');
  process.exit(1);
}
await fs.mkdir(dir, { recursive: true });
const chains = ['pipe', 'store', 'web', 'tus'] as const;
const chain = (process.env.BARE_CHAIN ?? 'pipe') as (typeof chains)[number];
if (!chains.includes(chain)) {
  console.error(`BARE_CHAIN must be one of ${chains.join(', ')}`);
  process.exit(1);
}

const server = http.createServer((req, res) => {
  void handle(req, res).catch((error: unknown) => {
    if (!res.headersSent) {
      res.statusCode = 500;
      res.end(String(error));
    } else {
      res.destroy();
    }
  });
});

async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://bare');
  if (req.method === 'POST' && url.pathname === '/files') {
    const id = randomBytes(16).toString('hex');
    await fs.writeFile(path.join(dir!, id), '');
    res.writeHead(201, { Location: `/files/${id}`, 'Upload-Offset': '0' }).end();
    return;
  }
  const match = /^\/files\/([0-9a-f]{32})$/.exec(url.pathname);
  if (req.method === 'PATCH' && match) {
    const offset = Number(req.headers['upload-offset'] ?? 0);
    const file = path.join(dir!, match[1]!);
    // Same as FileStore.write: the body straight into a WriteStream at the offset.
    const out = createWriteStream(file, { flags: 'r+', start: offset });
    if (chain === 'pipe') await pipeline(req, out);
    else await pipeline(bodyOf(req), countingTransform(), out);
    res.writeHead(204, { 'Upload-Offset': String(offset + out.bytesWritten) }).end();
    return;
  }
  req.resume();
  res.writeHead(404).end();
}

/** The request body as the store receives it under BARE_CHAIN (not used for `pipe`). */
function bodyOf(req: http.IncomingMessage): Readable {
  if (chain === 'store') return req;
  // srvx's NodeRequest.body, then @tus/server's BaseHandler.writeToStore.
  const nodeStream = Readable.fromWeb(Readable.toWeb(req) as WebReadableStream<Uint8Array>);
  if (chain === 'web') return nodeStream;
  const proxy = new PassThrough();
  let received = 0;
  proxy.on('data', (chunk: Buffer) => {
    received += chunk.byteLength; // @tus/server feeds a throttled POST_RECEIVE from here
  });
  return nodeStream.pipe(proxy).pipe(new StreamLimiter(Number.MAX_SAFE_INTEGER));
}

/** @tus/file-store's Transform that counts the bytes it passes on. */
function countingTransform(): Transform {
  let received = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      callback(null, chunk);
    },
  });
}

// Like the real server: a single large PATCH may take longer than the 5-minute default.
server.requestTimeout = 0;
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  console.log(JSON.stringify({ msg: 'listening', url: `http://127.0.0.1:${port}` }));
});
const stop = () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
