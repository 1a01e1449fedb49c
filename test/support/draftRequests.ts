import http from 'node:http';

/** Plain HTTP for the IETF resumable-upload draft: fetch hides 1xx answers, node:http's 'information' event does not. */

export interface Interim {
  status: number;
  headers: http.IncomingHttpHeaders;
}

export interface DraftAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The informational (1xx) answers before the final one, in order. */
  interim: Interim[];
}

/**
 * One request; `body` a Buffer (sent with Content-Length unless a header says otherwise) or a
 * function writing it to the request itself (to send it in pieces, or stall it).
 */
export function draftRequest(
  url: string,
  method: string,
  headers: Record<string, string | number>,
  body?: Buffer | ((req: http.ClientRequest) => void),
): Promise<DraftAnswer> {
  return new Promise((resolve, reject) => {
    const interim: Interim[] = [];
    const req = http.request(url, { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text, interim }));
      res.on('error', reject);
    });
    req.on('information', (info) => interim.push({ status: info.statusCode, headers: info.headers }));
    req.on('error', reject);
    if (typeof body === 'function') body(req);
    else req.end(body);
  });
}
