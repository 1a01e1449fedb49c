import { createHmac, timingSafeEqual } from 'node:crypto';

export type LinkCheck = 'valid' | 'tampered' | 'expired';

export interface LinkSigner {
  /** `?expires=…&sig=…` for a link to `name` of upload `id`. */
  query(id: string, name: string, now?: number): string;
  check(id: string, name: string, expires: unknown, sig: unknown, now?: number): LinkCheck;
}

/**
 * Download links that work without a header (`<img src>`, `<video src>`): an HMAC-SHA256 over
 * (upload id, name, expiry). The expiry is rounded up to a quarter of the lifetime, so the same
 * link is handed out for a while and a browser can keep the image it already has; a link lives
 * between `ttlMs` and 1.25 × `ttlMs`.
 */
export function createLinkSigner(secret: Buffer, ttlMs: number): LinkSigner {
  const stepSeconds = Math.max(1, Math.ceil(ttlMs / 4000));
  const mac = (id: string, name: string, expires: number) => createHmac('sha256', secret).update(`${id}\n${name}\n${expires}`).digest();
  return {
    query(id, name, now = Date.now()) {
      const expires = Math.ceil((now + ttlMs) / 1000 / stepSeconds) * stepSeconds;
      return `?expires=${expires}&sig=${mac(id, name, expires).toString('base64url')}`;
    },
    check(id, name, expires, sig, now = Date.now()) {
      if (typeof expires !== 'string' || typeof sig !== 'string' || !/^\d{1,12}$/.test(expires)) return 'tampered';
      const given = Buffer.from(sig, 'base64url');
      const wanted = mac(id, name, Number(expires));
      // Constant time: how much of a guessed signature matched must not show in the answer's timing.
      if (given.length !== wanted.length || !timingSafeEqual(given, wanted)) return 'tampered';
      return Number(expires) * 1000 > now ? 'valid' : 'expired';
    },
  };
}
