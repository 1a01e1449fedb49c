/**
 * Whether `error` means the database cannot be reached right now (down, restarting, its
 * connection cut), as opposed to a bad query: the request may succeed if tried again shortly,
 * so it is answered 503 with Retry-After rather than 500.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') {
    // Sockets: refused, reset, unreachable. SQLSTATE: class 08 (connection exception),
    // 57P01–57P03 (shutting down, crashed, starting up), 53300 (too many connections).
    if (/^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN)$/.test(code)) return true;
    if (/^(08...|57P0[123]|53300)$/.test(code)) return true;
  }
  // pg's own words for a connection that died under a query, or one a pool could not open in time.
  return /Connection terminated|not queryable|timeout exceeded when trying to connect/i.test(error.message);
}

/** Seconds a client is told to wait before trying again while the database is unavailable. */
export const databaseRetryAfterSeconds = 2;
