import net from 'node:net';

/** The final answer to a raw request (1xx answers skipped). */
export interface RawAnswer {
  status: number;
  /** Header names lower-cased; a repeated header's values joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
}

/** Past this an unanswered request is a hang, not a slow machine: every request here is a few KiB. */
const hangMs = 120_000;

/**
 * One HTTP/1.1 request written byte for byte on a socket of its own (`Connection: close`), so
 * header values can hold what node:http and fetch refuse to send (control characters, bytes
 * over 0x7f). Content-Length is the body's. Rejects when no answer comes before the server closes.
 */
export function rawRequest(url: string, method: string, path: string, headers: Array<[string, string]>, body: Uint8Array = Buffer.alloc(0)): Promise<RawAnswer> {
  const { hostname, port } = new URL(url);
  const head = [
    `${method} ${path} HTTP/1.1`,
    `Host: ${hostname}:${port}`,
    'Connection: close',
    ...headers.map(([name, value]) => `${name}: ${value}`),
    ...(body.length > 0 || method === 'POST' || method === 'PATCH' ? [`Content-Length: ${body.length}`] : []),
  ].join('\r\n');
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(Number(port), hostname);
    socket.setTimeout(hangMs, () => {
      socket.destroy();
      reject(new Error(`${method} ${path}: no answer within ${hangMs / 1000} s (headers ${JSON.stringify(headers)})`));
    });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    // A server that answers before reading the whole body may reset the connection under the rest: what it said still counts.
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      const answer = parseAnswer(Buffer.concat(chunks), method);
      if (answer) resolve(answer);
      else reject(new Error(`${method} ${path}: the connection closed without an answer (headers ${JSON.stringify(headers)})`));
    });
    socket.write(Buffer.concat([Buffer.from(`${head}\r\n\r\n`, 'latin1'), body]));
  });
}

function parseAnswer(bytes: Buffer, method: string): RawAnswer | undefined {
  let at = 0;
  for (;;) {
    const end = bytes.indexOf('\r\n\r\n', at);
    if (end === -1) return undefined;
    const [statusLine, ...lines] = bytes.subarray(at, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine!)?.[1]);
    if (!status) return undefined;
    at = end + 4;
    if (status >= 100 && status < 200) continue;
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    const rest = method === 'HEAD' ? Buffer.alloc(0) : bytes.subarray(at);
    return { status, headers, body: headers['transfer-encoding'] === 'chunked' ? unchunk(rest) : rest };
  }
}

/** A chunked body's data (RFC 9112 §7.1), as far as it arrived. */
function unchunk(bytes: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; ; ) {
    const lineEnd = bytes.indexOf('\r\n', at);
    if (lineEnd === -1) break;
    const size = Number.parseInt(bytes.subarray(at, lineEnd).toString('latin1'), 16);
    if (!size) break;
    parts.push(bytes.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(parts);
}
