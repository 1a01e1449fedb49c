import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Logger } from '../settings/log.ts';

/**
 * pg connections that outlive a Postgres restart. A pg client whose connection dies emits
 * 'error', and an 'error' nobody listens to ends the process; a pool listens only while a
 * client is idle (and then emits 'error' itself), so a client checked out at that moment, or
 * kept checked out as a lock is, would take the server down with it.
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

export interface Subscription {
  stop(): Promise<void>;
}

/**
 * LISTEN on `channels` (one or more) on one connection of its own, reconnected with backoff
 * (0.5 s doubling to 10 s) whenever it dies. Notifications sent while it was down are lost, so `onResubscribed`
 * is called after every reconnection for the listener to catch up (e.g. look for work now).
 * The first connection must succeed: a start with no database fails.
 */
export async function listenWithReconnect(
  connectionString: string,
  channels: string | readonly string[],
  onNotify: (payload: string, channel: string) => void,
  onResubscribed: () => void,
  log: Logger,
): Promise<Subscription> {
  const channel = typeof channels === 'string' ? channels : channels.join(',');
  let client: pg.Client | undefined;
  let stopped = false;
  // Ends a backoff sleep at once, so a stopped process is not kept alive by it.
  const stopping = new AbortController();

  const subscribe = async (): Promise<pg.Client> => {
    const next = new pg.Client({ connectionString });
    next.on('error', (err) => log.warn({ err, channel }, 'the LISTEN connection died'));
    try {
      await next.connect();
      next.on('notification', (message) => onNotify(message.payload ?? '', message.channel));
      for (const name of typeof channels === 'string' ? [channels] : channels) await next.query(`listen ${next.escapeIdentifier(name)}`);
    } catch (error) {
      await next.end().catch(() => undefined);
      throw error;
    }
    // 'end' follows every death of the connection (and our own end()).
    next.once('end', () => void (stopped ? undefined : reconnect()));
    return next;
  };

  const reconnect = async () => {
    let delayMs = 500;
    while (!stopped) {
      await sleep(delayMs, undefined, { signal: stopping.signal }).catch(() => undefined);
      if (stopped) return;
      try {
        client = await subscribe();
        log.info({ channel }, 'LISTEN connection back');
        onResubscribed();
        return;
      } catch (err) {
        delayMs = Math.min(delayMs * 2, 10_000);
        log.warn({ err, channel, retryInMs: delayMs }, 'reconnecting the LISTEN connection failed');
      }
    }
  };

  client = await subscribe();
  return {
    stop: async () => {
      stopped = true;
      stopping.abort();
      await client?.end().catch(() => undefined);
    },
  };
}
