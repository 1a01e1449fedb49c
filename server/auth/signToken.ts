import { createPrivateKey, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { algorithmOf } from '../infra/settings/config.ts';

/** What signs a token: the server's AUTH_SECRET, or the private half of its AUTH_PUBLIC_KEY. */
export type SigningKey =
  | { kind: 'secret'; secret: Uint8Array }
  | { kind: 'privateKey'; key: KeyObject; algorithm: 'RS256' | 'ES256' | 'EdDSA' };

/** The claims of a token as the server reads them (see verifyToken.ts). */
export interface TokenRequest {
  owner: string;
  ttlSeconds: number;
  maxSize?: number;
  types?: string[];
  issuer?: string;
  audience?: string;
}

/** A PEM private key and the one algorithm it signs with: the key decides, as on the verifying side. */
export function privateSigningKey(pem: string): SigningKey {
  const key = createPrivateKey(pem);
  const algorithm = algorithmOf(key);
  if (!algorithm) throw new Error(`a ${key.asymmetricKeyType} key is not supported (RSA for RS256, EC P-256 for ES256, Ed25519 for EdDSA)`);
  return { kind: 'privateKey', key, algorithm };
}

/** Signs a token the way an app's backend would, with jose. */
export function signToken(signingKey: SigningKey, request: TokenRequest): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({
    ...(request.maxSize !== undefined ? { max_size: request.maxSize } : {}),
    ...(request.types !== undefined ? { types: request.types } : {}),
  })
    .setProtectedHeader({ alg: signingKey.kind === 'secret' ? 'HS256' : signingKey.algorithm, typ: 'JWT' })
    .setSubject(request.owner)
    .setIssuedAt(now)
    .setExpirationTime(now + request.ttlSeconds);
  if (request.issuer) jwt.setIssuer(request.issuer);
  if (request.audience) jwt.setAudience(request.audience);
  return jwt.sign(signingKey.kind === 'secret' ? signingKey.secret : signingKey.key);
}
