import pg from 'pg';
import type { Logger } from '../settings/log.ts';

/** How the lock session shows up in pg_stat_activity (tests and the bench look for it). */
export const lockSessionName = 'tus-upload locks';

/** A query that has not answered in this long means the server or the path to it is gone. */
const queryTimeoutMs = 10_000;
/** Reconnect backoff after the session is lost: the first retry is quick, an outage is not hammered. */
const firstRetryMs = 100;
const maxRetryMs = 5_000;

/**
 * Keepalive on both ends of the session, so a peer that vanishes without closing the socket
 * (a host that died, a dropped network) is noticed within seconds instead of TCP's minutes:
 * the server then frees the dead instance's locks, and this instance learns it lost them.
 */
const clientKeepAlive = { keepAlive: true, keepAliveInitialDelayMillis: 5_000 };
const serverKeepAlive = [
  'set tcp_keepalives_idle = 5',
  'set tcp_keepalives_interval = 2',
  'set tcp_keepalives_count = 3',
  // Unacknowledged data (a NOTIFY to a dead instance) gives up after this long too.
  'set tcp_user_timeout = 11000',
  // The session sits idle while it holds locks: a server-wide idle timeout must not end it.
  'set idle_session_timeout = 0',
];

export interface LockSessionOptions {
  databaseUrl: string;
  /** LISTENed on, again on every new session. */
  channel: string;
  onNotify(payload: string): void;
  /** The session ended: every session-level lock taken on `client` is gone. */
  onLost(client: pg.Client): void;
  log: Logger;
}

/**
 * One dedicated Postgres session, outside any pool, that reconnects with backoff when it is lost.
 * Its queries run one after another (pg 8 deprecates queueing them on the client itself).
 */
export class LockSession {
  /** The session, while it is up. */
  private client: pg.Client | undefined;
  private retryMs = firstRetryMs;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** The last query queued: the next one starts when it has settled. */
  private tail: Promise<unknown> = Promise.resolve();

  private readonly options: LockSessionOptions;
  private constructor(options: LockSessionOptions) {
    this.options = options;
  }

  /** Connects once before returning: a server that cannot reach its database should not start. */
  static async open(options: LockSessionOptions): Promise<LockSession> {
    const session = new LockSession(options);
    await session.connect();
    return session;
  }

  /** The live session, or undefined while it is being re-established. */
  get live(): pg.Client | undefined {
    return this.client;
  }

  /**
   * Runs `text` on `client`. A query that times out leaves the session in an unknown state
   * (was the lock taken?), so the session is dropped and counts as lost.
   */
  query<Row extends pg.QueryResultRow>(client: pg.Client, text: string, values: unknown[]): Promise<Row[]> {
    const run = this.tail.then(async () => {
      try {
        return (await client.query<Row>(text, values)).rows;
      } catch (error) {
        if (error instanceof Error && error.message === 'Query read timeout') client.connection.stream.destroy();
        throw error;
      }
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end();
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.options.databaseUrl, application_name: lockSessionName, query_timeout: queryTimeoutMs, ...clientKeepAlive });
    // An 'error' on a pg client nobody listens to kills the process; 'end' follows and is what counts.
    client.on('error', (err) => this.options.log.warn({ err }, 'lock session error'));
    client.on('end', () => this.lost(client));
    client.on('notification', (message) => this.options.onNotify(message.payload ?? ''));
    try {
      await client.connect();
      await client.query([...serverKeepAlive, `listen ${client.escapeIdentifier(this.options.channel)}`].join(';'));
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    if (this.closed) {
      await client.end();
      return;
    }
    this.client = client;
    this.retryMs = firstRetryMs;
  }

  private lost(client: pg.Client): void {
    if (this.client !== client) return; // a session that never came up, or close()
    this.client = undefined;
    this.options.log.warn('lock session lost: every lock it held is released, reconnecting');
    this.options.onLost(client);
    this.reconnectLater();
  }

  private reconnectLater(): void {
    if (this.closed) return;
    const delay = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, maxRetryMs);
    this.retryTimer = setTimeout(() => {
      this.connect().then(
        () => this.options.log.info('lock session re-established'),
        (err: unknown) => {
          this.options.log.warn({ err, retryInMs: this.retryMs }, 'lock session could not reconnect');
          this.reconnectLater();
        },
      );
    }, delay);
  }
}
