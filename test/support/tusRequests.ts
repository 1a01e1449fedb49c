import http from 'node:http';

/** Plain tus requests over node:http, for tests that need to see (or stall) each request themselves. */

function encodeMetadata(metadata: Record<string, string>): string {
  return Object.entries(metadata)
    .map(([k, v]) => `${k} ${Buffer.from(v).toString('base64')}`)
    .join(',');
}

/** One plain HTTP request with a Buffer body; resolves with status, headers and body text. */
export function request(url: string, method: string, headers: Record<string, string | number>, body?: Buffer) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }>((resolve, reject) => {
    const req = http.request(url, { method, headers: { 'Tus-Resumable': '1.0.0', ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export async function createTusUpload(baseUrl: string, size: number, metadata: Record<string, string>): Promise<string> {
  const res = await request(`${baseUrl}/files/`, 'POST', { 'Upload-Length': size, 'Upload-Metadata': encodeMetadata(metadata) });
  if (res.status !== 201 || !res.headers.location) throw new Error(`creating the upload: ${res.status} ${res.text}`);
  return res.headers.location;
}

export async function headOffset(fileUrl: string): Promise<number> {
  const res = await request(fileUrl, 'HEAD', {});
  if (res.status !== 200) throw new Error(`HEAD ${fileUrl}: ${res.status}`);
  return Number(res.headers['upload-offset']);
}

export async function patch(fileUrl: string, data: Buffer, offset: number, length: number): Promise<number> {
  const res = await request(
    fileUrl,
    'PATCH',
    { 'Upload-Offset': offset, 'Content-Type': 'application/offset+octet-stream', 'Content-Length': length },
    data.subarray(offset, offset + length),
  );
  if (res.status !== 204) throw new Error(`PATCH at ${offset}: ${res.status} ${res.text}`);
  return Number(res.headers['upload-offset']);
}

