import pg from 'pg';
import type { DatabaseHeartbeat } from '../settings/config.ts';
import type { Logger } from '../settings/log.ts';

/**
 * Keepalive on both ends, so a peer that vanishes without closing the socket (a host that died)
 * is noticed by the kernel: the server then frees the dead instance's session locks. It cannot
 * be the whole answer on this end: a proxy that stops forwarding still answers the probes itself.
 */
const clientKeepAlive = { keepAlive: true, keepAliveInitialDelayMillis: 5_000 };
const serverSettings = [
  'set tcp_keepalives_idle = 5',
  'set tcp_keepalives_interval = 2',
  'set tcp_keepalives_count = 3',
  // Unacknowledged data (a NOTIFY to a dead instance) gives up after this long too.
  'set tcp_user_timeout = 11000',
  // The connection sits idle between heartbeats (holding locks, waiting for notifications): a server-wide idle timeout must not end it.
  'set idle_session_timeout = 0',
];

/** Reconnect backoff after a loss: the first retry is quick, an outage is not hammered. */
const firstRetryMs = 100;
const maxRetryMs = 5_000;

/** A server process serving one connection. */
interface Backend {
  pid: number;
  /** Its start, to the microsecond (a Date would drop those): with the pid, it names one backend. */
  started: string;
}
const startedMicros = '(extract(epoch from backend_start) * 1000000)::bigint::text';

export interface DedicatedConnectionOptions {
  connectionString: string;
  /** Its application_name, as pg_stat_activity shows it, and its name in the logs. */
  name: string;
  /** LISTENed on, again on every new connection. */
  channels: readonly string[];
  onNotify(payload: string, channel: string): void;
  /** The connection ended without close(): whatever was held on `client` (session locks) is gone. A new one is on its way. */
  onLost?(client: pg.Client): void;
  /** A new connection replaced a lost one and LISTENs again: notifications sent in between were missed. */
  onReplaced?(): void;
  heartbeat: DatabaseHeartbeat;
  log: Logger;
}

/**
 * One Postgres connection of its own, outside any pool, kept up for whoever holds session state on
 * it (advisory locks, LISTEN): reconnected with backoff whenever it is lost, with its LISTENs
 * issued again. Besides TCP keepalive it sends a heartbeat (`select 1`) every interval: a query
 * (that one or any other) without an answer within the timeout ends the connection, since only
 * an answer proves the server is still there, and the owner is told (`onLost`, then `onReplaced`).
 * Its queries run one after another (pg 8 deprecates queueing them on the client itself).
 */
export class DedicatedConnection {
  /** The connection, while it is up, and its backend on the server. */
  private client: pg.Client | undefined;
  private backend: Backend | undefined;
  /** The backend of the connection last given up on, which the server may not know is gone. */
  private abandoned: Backend | undefined;
  private retryMs = firstRetryMs;
  private retryTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** The last query queued: the next one starts when it has settled. */
  private tail: Promise<unknown> = Promise.resolve();

  private readonly options: DedicatedConnectionOptions;
  private constructor(options: DedicatedConnectionOptions) {
    this.options = options;
  }

  /** Connects once before returning: a process that cannot reach its database should not start. */
  static async open(options: DedicatedConnectionOptions): Promise<DedicatedConnection> {
    const connection = new DedicatedConnection(options);
    await connection.connect();
    return connection;
  }

  /** The live connection, or undefined while it is being replaced. */
  get live(): pg.Client | undefined {
    return this.client;
  }

  /**
   * Runs `text` on `client`, a connection this object made: one that has since been replaced
   * fails the query instead of running it on another session. A query that times out leaves the
   * session in an unknown state (was the lock taken?), so the connection is dropped and counts as lost.
   */
  query<Row extends pg.QueryResultRow>(client: pg.Client, text: string, values: unknown[] = []): Promise<Row[]> {
    const run = this.tail.then(async () => {
      try {
        return (await client.query<Row>(text, values)).rows;
      } catch (error) {
        if (error instanceof Error && error.message === 'Query read timeout') {
          this.options.log.warn({ connection: this.options.name }, 'a query on a dedicated connection went unanswered: ending the connection');
          client.connection.stream.destroy();
        }
        throw error;
      }
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.heartbeatTimer);
    const client = this.client;
    this.client = undefined;
    if (client) await this.end(client);
  }

  private async connect(): Promise<void> {
    const { connectionString, name, heartbeat, log } = this.options;
    const timeouts = { connectionTimeoutMillis: heartbeat.timeoutMs, query_timeout: heartbeat.timeoutMs };
    const client = new pg.Client({ connectionString, application_name: name, ...timeouts, ...clientKeepAlive });
    // An 'error' on a pg client nobody listens to kills the process; 'end' follows and is what counts.
    client.on('error', (err) => log.warn({ err, connection: name }, 'dedicated connection error'));
    let ended = false;
    client.on('end', () => {
      ended = true;
      this.lost(client);
    });
    client.on('notification', (message) => this.options.onNotify(message.payload ?? '', message.channel));
    let backend: Backend;
    try {
      await client.connect();
      const listens = this.options.channels.map((channel) => `listen ${client.escapeIdentifier(channel)}`);
      await client.query([...serverSettings, ...listens].join(';'));
      backend = (await client.query<Backend>(`select pid, ${startedMicros} as started from pg_stat_activity where pid = pg_backend_pid()`)).rows[0]!;
      if (this.abandoned) await this.terminate(client, this.abandoned);
      // Only the live connection is watched (lost(), the heartbeat): one that ended while it was set up must not become it.
      if (ended) throw new Error('the connection ended while it was set up');
    } catch (error) {
      await this.end(client);
      throw error;
    }
    if (this.closed) {
      await this.end(client);
      return;
    }
    this.client = client;
    this.backend = backend;
    this.retryMs = firstRetryMs;
    this.beat(client);
  }

  /** The next heartbeat, `intervalMs` after the last one answered; one that fails ends the connection. */
  private beat(client: pg.Client): void {
    this.heartbeatTimer = setTimeout(() => {
      this.query(client, 'select 1').then(
        () => {
          if (this.client === client) this.beat(client);
        },
        () => client.connection.stream.destroy(),
      );
    }, this.options.heartbeat.intervalMs);
  }

  private lost(client: pg.Client): void {
    if (this.client !== client) return; // a connection that never came up, or close()
    this.client = undefined;
    this.abandoned = this.backend;
    clearTimeout(this.heartbeatTimer);
    this.options.log.warn({ connection: this.options.name }, 'dedicated connection lost; reconnecting');
    this.options.onLost?.(client);
    this.reconnectLater();
  }

  private reconnectLater(): void {
    if (this.closed) return;
    const delay = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, maxRetryMs);
    this.retryTimer = setTimeout(() => {
      this.connect().then(
        () => {
          if (!this.client) return;
          this.options.log.info({ connection: this.options.name }, 'dedicated connection back');
          this.options.onReplaced?.();
        },
        (err: unknown) => {
          this.options.log.warn({ err, connection: this.options.name, retryInMs: this.retryMs }, 'dedicated connection could not reconnect');
          this.reconnectLater();
        },
      );
    }, delay);
  }

  /**
   * Ends the backend of a connection given up on, if it is still there: a path that stopped
   * forwarding may leave the server holding it (and its session locks) until its own keepalive
   * gives up, while the owner was told they are gone. The start time tells it from a later
   * backend that got the same pid.
   */
  private async terminate(client: pg.Client, backend: Backend): Promise<void> {
    try {
      await client.query(`select pg_terminate_backend(pid) from pg_stat_activity where pid = $1 and ${startedMicros} = $2`, [backend.pid, backend.started]);
      this.abandoned = undefined;
    } catch (err) {
      // Refused (a role without the right to), or this connection died too: it is tried again on the next.
      this.options.log.warn({ err, connection: this.options.name, pid: backend.pid }, 'could not end the backend of the connection given up on');
    }
  }

  /** Ends `client`; drops its socket when the end does not go through within the timeout (a peer that stopped answering never lets it). */
  private async end(client: pg.Client): Promise<void> {
    const drop = setTimeout(() => client.connection.stream.destroy(), this.options.heartbeat.timeoutMs);
    await client.end().catch(() => undefined);
    clearTimeout(drop);
  }
}
