/**
 * Which dependency an error says is unreachable right now — the database or the object store —
 * as opposed to a refusal or a bug: the request may succeed if tried again shortly, so it is
 * answered (and logged) naming that dependency rather than as a 500. Postgres and S3 fail with the
 * same socket codes, so the store's client marks its own failures (`markUnavailable`); an
 * unmarked one is the database's.
 */
export type Dependency = 'database' | 'store';

export function unavailableDependency(error: unknown): Dependency | undefined {
  if (!(error instanceof Error)) return undefined;
  const marked = (error as { [unavailable]?: Dependency })[unavailable];
  if (marked) return marked;
  if (isConnectionFailure(error)) return 'database';
  // SQLSTATE: class 08 (connection exception), 57P01–57P03 (shutting down, crashed, starting up), 53300 (too many connections).
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && /^(08...|57P0[123]|53300)$/.test(code)) return 'database';
  // pg's own words for a connection that died under a query, or one a pool could not open in time.
  return /Connection terminated|not queryable|timeout exceeded when trying to connect/i.test(error.message) ? 'database' : undefined;
}

/** The socket and DNS failures of a connection that could not be made or was lost. */
export function isConnectionFailure(error: Error): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && /^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN)$/.test(code);
}

/** Records that `error` is `dependency`'s being unreachable, for `unavailableDependency`. */
export function markUnavailable(error: Error, dependency: Dependency): void {
  Object.defineProperty(error, unavailable, { value: dependency, configurable: true });
}

/** Seconds a client is told to wait before trying again while the database or the store is unavailable. */
export const unavailableRetryAfterSeconds = 2;

const unavailable = Symbol('unavailableDependency');
