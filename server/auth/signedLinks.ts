import { createHmac, timingSafeEqual } from 'node:crypto';
import type { StatusLinks } from '../../hooks/uploadStatusJson.ts';
import type { Config } from '../infra/settings/config.ts';

export type LinkCheck = 'valid' | 'tampered' | 'expired';

export interface LinkSigner {
  /** `?expires=…&sig=…` for a link to `name` of upload `id`. */
  query(id: string, name: string, now?: number): string;
  check(id: string, name: string, expires: unknown, sig: unknown, now?: number): LinkCheck;
  /**
   * `<expires>.<sig>`: the same signature as one path segment, for links whose query a client
   * drops (players resolve a playlist's files against its URL without the query).
   */
  pathSegment(id: string, name: string, now?: number): string;
  checkPathSegment(id: string, name: string, segment: string, now?: number): LinkCheck;
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
  const sign = (id: string, name: string, now: number) => {
    const expires = Math.ceil((now + ttlMs) / 1000 / stepSeconds) * stepSeconds;
    return { expires, sig: mac(id, name, expires).toString('base64url') };
  };
  const signer: LinkSigner = {
    query(id, name, now = Date.now()) {
      const { expires, sig } = sign(id, name, now);
      return `?expires=${expires}&sig=${sig}`;
    },
    pathSegment(id, name, now = Date.now()) {
      const { expires, sig } = sign(id, name, now);
      return `${expires}.${sig}`;
    },
    checkPathSegment(id, name, segment, now = Date.now()) {
      const [expires, sig, ...rest] = segment.split('.');
      return rest.length > 0 ? 'tampered' : signer.check(id, name, expires, sig, now);
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
  return signer;
}

/** The server's two signers, with tokens on: downloads and event streams, and the folders of multi-file outputs (HLS_LINK_TTL). */
export interface LinkSigners {
  downloads: LinkSigner;
  folders: LinkSigner;
}

export function createLinkSigners(config: Config): LinkSigners | undefined {
  if (config.auth.mode !== 'token') return undefined;
  return { downloads: createLinkSigner(config.auth.linkSecret, config.downloadLinkTtlMs), folders: createLinkSigner(config.auth.linkSecret, config.hlsLinkTtlMs) };
}

/** How the status JSON signs its links (nothing signed without tokens). */
export function statusLinkSigning(signers: LinkSigners | undefined): Omit<StatusLinks, 'base'> {
  return { signQuery: signers?.downloads.query, signFolder: signers?.folders.pathSegment };
}
