import { randomUUID } from 'node:crypto';
import type { AuthorizeConfig } from '../server/infra/settings/config.ts';
import type { Logger } from '../server/infra/settings/log.ts';
import { postStandardWebhook, whyNoAnswer, withoutSecrets } from './standardWebhookPost.ts';
import { isMetadataKey, metadataOverBounds } from './uploadMetadata.ts';

/** What the app is told about an upload about to be created (the JSON body POSTed to AUTHORIZE_URL). */
export interface AuthorizeQuestion {
  /** The token's `sub`; null when the server runs open. */
  owner: string | null;
  filename: string | null;
  type: string | null;
  /** Null while the length is deferred. */
  size: number | null;
  metadata: Record<string, string | null>;
  /** The client's address as the server sees it (X-Forwarded-For only behind PUBLIC_URL). */
  ip: string;
}

/** Allowed, perhaps with replaced metadata or a smaller size limit; refused with the app's status and words; or no usable answer. */
export type AuthorizeAnswer =
  | { verdict: 'allowed'; metadata?: Record<string, string>; maxSize?: number }
  | { verdict: 'refused'; status: number; message: string }
  | { verdict: 'unavailable' };

const unavailable = { verdict: 'unavailable' } as const;

/**
 * Asks the app at AUTHORIZE_URL whether this upload may be created. Fails closed: a timeout, a
 * refused connection, a 5xx, a redirect or a 2xx body that is not the expected JSON is
 * `unavailable`, never an allowance. Failures are logged with the app's address, not the body.
 */
export async function authorizeUpload(settings: AuthorizeConfig, log: Logger, question: AuthorizeQuestion): Promise<AuthorizeAnswer> {
  const failed = (problem: string) => {
    log.warn({ app: withoutSecrets(settings.url), problem }, 'the authorize app gave no usable answer; upload refused');
    return unavailable;
  };
  let status: number;
  let body: string;
  try {
    const response = await postStandardWebhook({ url: settings.url, secret: settings.secret, id: randomUUID(), body: JSON.stringify(question), timeoutMs: settings.timeoutMs });
    status = response.status;
    body = await response.text();
  } catch (error) {
    return failed(whyNoAnswer(error, 'AUTHORIZE_TIMEOUT', settings.timeoutMs));
  }
  if (status >= 400 && status < 500) return { verdict: 'refused', status, message: messageOf(body) ?? 'the app refused this upload' };
  if (status < 200 || status >= 300) return failed(`answered HTTP ${status}`);
  const allowance = readAllowance(body);
  return 'problem' in allowance ? failed(allowance.problem) : allowance;
}

/** An empty 2xx allows as it is; otherwise a JSON object whose `metadata` and `max_size`, when not null, must be what they say. */
function readAllowance(body: string): Extract<AuthorizeAnswer, { verdict: 'allowed' }> | { problem: string } {
  if (body.trim() === '') return { verdict: 'allowed' };
  const answer = parseObject(body);
  if (!answer) return { problem: 'its 2xx body is not a JSON object' };
  const metadata = answer.metadata ?? undefined;
  const maxSize = answer.max_size ?? undefined;
  if (metadata !== undefined && !isStringRecord(metadata)) return { problem: 'its metadata is not an object of strings under tus metadata keys' };
  // Held to the bounds of what a client may send: it is stored, and given back in the status JSON and HEAD.
  const over = metadata === undefined ? undefined : metadataOverBounds(metadata);
  if (over) return { problem: `its metadata is over the bounds of Upload-Metadata: ${over}` };
  if (maxSize !== undefined && !(typeof maxSize === 'number' && Number.isSafeInteger(maxSize) && maxSize >= 1)) {
    return { problem: 'its max_size is not a positive whole number of bytes' };
  }
  return { verdict: 'allowed', metadata, maxSize };
}

/** The `message` of a refusal's JSON body, when it has one. */
function messageOf(body: string): string | undefined {
  const message = parseObject(body)?.message;
  return typeof message === 'string' && message.trim() !== '' ? message.trim() : undefined;
}

function parseObject(body: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(body);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function isStringRecord(value: unknown): value is Record<string, string> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.entries(value).every(([key, v]) => isMetadataKey(key) && typeof v === 'string');
}
