import type { Context } from 'koa';

/** The tus version this server speaks. */
export const TUS_VERSION = '1.0.0';
export const OCTET_STREAM = 'application/offset+octet-stream';

/** A tus request refused before @tus/server sees it: a plain-text reason, and the version spoken (CORS is set by the HTTP layer). */
export function refuseTusRequest(ctx: Context, status: number, reason: string, headers: Record<string, string> = {}): void {
  ctx.set({ 'Tus-Resumable': TUS_VERSION, ...headers });
  ctx.status = status;
  ctx.body = `${reason}\n`;
}

/**
 * A header's non-negative integer (tus: Upload-Length, Upload-Offset; HTTP: Content-Length; the
 * IETF draft's sf-integer, whose "other values MUST cause the entire header field to be ignored").
 * Undefined for anything else, or no header.
 */
export function headerInteger(value: string | null | undefined): number | undefined {
  const trimmed = value?.trim();
  return trimmed !== undefined && /^\d{1,15}$/.test(trimmed) ? Number(trimmed) : undefined;
}
