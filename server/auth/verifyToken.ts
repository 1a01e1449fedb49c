import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type KeyObject } from 'jose';
import type { AuthConfig } from '../infra/settings/config.ts';

/** Who is asking, as a verified token says (or nobody in particular, when the server runs open). */
export interface Caller {
  /** The token's `sub`; null when the server runs open. */
  owner: string | null;
  /** Limits the app signed into the token; each only narrows the type policy. */
  limits: TokenLimits;
  /** Past its `exp` but within AUTH_RESUME_GRACE: good only for resuming the owner's unfinished upload. */
  expired: boolean;
}

export interface TokenLimits {
  maxSize?: number;
  types?: string[];
}

export const openCaller: Caller = { owner: null, limits: {}, expired: false };

/** A refusal: 401 for a token that does not hold, 503 when the key set cannot be fetched. */
export interface TokenRefusal {
  status: 401 | 503;
  /** RFC 6750's error code; absent when no token was sent at all. */
  error: 'invalid_token' | undefined;
  description: string;
}

export type TokenCheck = { caller: Caller } | { refusal: TokenRefusal };

type TokenAuth = Extract<AuthConfig, { mode: 'token' }>;

/**
 * Verifies a Bearer token with jose. The algorithms accepted follow from the configured key,
 * never from the token: HS256 for AUTH_SECRET, the key's own algorithm for AUTH_PUBLIC_KEY, the
 * asymmetric ones for a JWKS (so `alg: none` and HS256-signed-with-the-public-key both fail).
 */
export function createTokenVerifier(auth: TokenAuth): (token: string | undefined) => Promise<TokenCheck> {
  const { key, algorithms } = verificationKey(auth);
  const options = { algorithms, issuer: auth.issuer, audience: auth.audience, requiredClaims: ['sub', 'exp'] };
  return async (token) => {
    if (!token) return { refusal: { status: 401, error: undefined, description: 'a Bearer token is required' } };
    let payload: JWTPayload;
    let expired = false;
    try {
      // jose checks every other claim before `exp`, so an expired token's payload is otherwise valid.
      payload = (await jwtVerify(token, key as Parameters<typeof jwtVerify>[1], options)).payload;
    } catch (error) {
      if (!(error instanceof errors.JWTExpired) || !withinGrace(error.payload, auth.resumeGraceMs)) return { refusal: refusalFor(error) };
      payload = error.payload;
      expired = true;
    }
    const claims = readClaims(payload);
    return 'problem' in claims ? { refusal: { status: 401, error: 'invalid_token', description: claims.problem } } : { caller: { ...claims, expired } };
  };
}

function verificationKey(auth: TokenAuth): { key: Uint8Array | KeyObject | JWTVerifyGetKey; algorithms: string[] } {
  switch (auth.key.kind) {
    case 'secret':
      return { key: auth.key.secret, algorithms: ['HS256'] };
    case 'publicKey':
      return { key: auth.key.key, algorithms: [auth.key.algorithm] };
    case 'jwks':
      // Cached, and fetched again on an unknown `kid` (at most every 30 s), as jose does by default.
      return { key: createRemoteJWKSet(auth.key.url), algorithms: ['RS256', 'ES256', 'EdDSA'] };
  }
}

function withinGrace(payload: JWTPayload, graceMs: number): boolean {
  return typeof payload.exp === 'number' && payload.exp * 1000 + graceMs > Date.now();
}

/** `sub` names the owner; `max_size` and `types`, when present, must be what they say. */
function readClaims(payload: JWTPayload): { owner: string; limits: TokenLimits } | { problem: string } {
  const { sub, max_size: maxSize, types } = payload as JWTPayload & { max_size?: unknown; types?: unknown };
  if (typeof sub !== 'string' || sub === '' || sub.length > 255) return { problem: 'the sub claim must be a string of 1 to 255 characters' };
  const limits: TokenLimits = {};
  if (maxSize !== undefined) {
    if (typeof maxSize !== 'number' || !Number.isSafeInteger(maxSize) || maxSize < 1) return { problem: 'the max_size claim must be a positive whole number of bytes' };
    limits.maxSize = maxSize;
  }
  if (types !== undefined) {
    if (!Array.isArray(types) || !types.every((t) => typeof t === 'string' && t.includes('/'))) return { problem: 'the types claim must be an array of MIME types' };
    limits.types = types as string[];
  }
  return { owner: sub, limits };
}

/** What went wrong, in words safe for a header (no quotes) and for the client to see. */
function refusalFor(error: unknown): TokenRefusal {
  const invalid = (description: string): TokenRefusal => ({ status: 401, error: 'invalid_token', description });
  if (error instanceof errors.JWTExpired) return invalid('the token has expired');
  if (error instanceof errors.JOSEAlgNotAllowed || error instanceof errors.JOSENotSupported) return invalid('the token is signed with an algorithm this server does not accept');
  if (error instanceof errors.JWSSignatureVerificationFailed) return invalid('the token signature does not verify');
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) return invalid('no key of the key set matches the token');
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid) return { status: 503, error: undefined, description: 'the key set cannot be fetched; try again later' };
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.reason === 'missing') return invalid(`the token has no ${error.claim} claim`);
    if (error.claim === 'nbf') return invalid('the token is not valid yet');
    return invalid(`the ${error.claim} claim is not what this server accepts`);
  }
  if (error instanceof errors.JOSEError) return invalid('the token is malformed');
  // A key set that could not be fetched surfaces as a plain fetch error.
  if (error instanceof TypeError || (error as { code?: string }).code === 'ECONNREFUSED') {
    return { status: 503, error: undefined, description: 'the key set cannot be fetched; try again later' };
  }
  return invalid('the token is malformed');
}
