import type { Context } from 'koa';
import { httpError } from './httpError.ts';

/**
 * A request's JSON body, read up to `maxBytes` (a 400 past it or when it is not JSON). Streamed
 * and counted, so an endless body costs no more than the limit.
 */
export async function readJsonBody(ctx: Context, maxBytes: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    length += chunk.length;
    if (length > maxBytes) httpError(413, `the body is over ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  if (length === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    return httpError(400, 'the body is not JSON');
  }
}
