import { SignJWT, type JWTPayload } from 'jose';

/** The HS256 secret test servers verify with (AUTH_SECRET): 32+ bytes, as the server demands. */
export const testAuthSecret = 'test-secret-of-at-least-32-bytes-for-hs256';

/**
 * A token as an app's backend signs one, with jose: `sub` the owner, `exp` `ttlSeconds` from now
 * (negative for one that has already expired), more claims as given.
 */
export async function mintToken(
  owner: string,
  options: { ttlSeconds?: number; claims?: JWTPayload; secret?: string } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ ...options.claims })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(owner)
    .setIssuedAt(now)
    .setExpirationTime(now + (options.ttlSeconds ?? 3600))
    .sign(new TextEncoder().encode(options.secret ?? testAuthSecret));
}

export const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });
