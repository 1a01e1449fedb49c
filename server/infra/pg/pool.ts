import pg from 'pg';
import type { Logger } from '../settings/log.ts';

/**
 * A pool that outlives a Postgres restart. A pg client whose connection dies emits 'error', and
 * an 'error' nobody listens to ends the process; a pool listens only while a client is idle (and
 * then emits 'error' itself), so a client checked out at that moment would take the server down with it.
 */

/** A pool with an 'error' listener on itself and on every client it makes, checked out or not. */
export function createPool(config: pg.PoolConfig, log: Logger, what: string): pg.Pool {
  const pool = new pg.Pool(config);
  pool.on('connect', (client) => {
    client.on('error', (err) => log.warn({ err, pool: what }, 'a database connection died; the pool replaces it'));
  });
  // An idle client's death, already logged by the client's own listener above.
  pool.on('error', () => undefined);
  return pool;
}
