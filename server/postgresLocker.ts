import { setTimeout as sleep } from 'node:timers/promises';
import { ERRORS, type Lock, type Locker, type RequestRelease } from '@tus/utils';
import type pg from 'pg';
import { createPool, listenWithReconnect, type Subscription } from './db/pgConnections.ts';
import type { Logger } from './log.ts';

const releaseChannel = 'tus_lock_release';

/**
 * tus locks that hold across server instances: a Postgres session advisory lock per upload,
 * on a connection kept for as long as the lock is held. A request that finds the lock taken
 * asks the holder to let go over NOTIFY (the holder may be another instance), as tus's own
 * in-memory locker does within one process, so a client resuming after a dropped connection
 * is not kept waiting by its own half-dead earlier request.
 *
 * A lock lives as long as its connection: Postgres drops a dead session's advisory locks, so
 * when the connection dies (a database restart) the lock is lost, and its request is asked to
 * end as for any other holder. It answers with the offset it kept, from which the client resumes.
 */
export class PostgresLocker implements Locker {
  /** Locks held by this process, with the callback that asks their request to finish. */
  readonly held = new Map<string, RequestRelease>();
  private listener: Subscription | undefined;

  constructor(
    readonly pool: pg.Pool,
    readonly acquireTimeoutMs: number,
  ) {}

  static async create(databaseUrl: string, log: Logger, acquireTimeoutMs = 30_000): Promise<PostgresLocker> {
    const locker = new PostgresLocker(createPool({ connectionString: databaseUrl, max: 30 }, log, 'locks'), acquireTimeoutMs);
    // Nothing to catch up on after a reconnection: a waiting request repeats its release request every 50 ms.
    locker.listener = await listenWithReconnect(
      databaseUrl,
      releaseChannel,
      (id) => void locker.held.get(id)?.(),
      () => undefined,
      log,
    );
    return locker;
  }

  newLock(id: string): Lock {
    return new PostgresLock(this, id);
  }

  async close(): Promise<void> {
    await this.listener?.stop();
    await this.pool.end();
  }
}

class PostgresLock implements Lock {
  private client: pg.PoolClient | undefined;
  private release: RequestRelease | undefined;
  /** The connection died, and the lock with it: no longer held, and its request must stop writing. */
  private readonly onConnectionLost = () => {
    this.forget();
    void this.release?.();
  };

  constructor(
    private readonly locker: PostgresLocker,
    private readonly id: string,
  ) {}

  async lock(signal: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    const client = await this.locker.pool.connect();
    const deadline = Date.now() + this.locker.acquireTimeoutMs;
    try {
      for (;;) {
        const { rows } = await client.query<{ ok: boolean }>('select pg_try_advisory_lock(hashtextextended($1, 0)) as ok', [this.id]);
        if (rows[0]?.ok) {
          this.client = client;
          this.release = requestRelease;
          this.locker.held.set(this.id, requestRelease);
          client.once('error', this.onConnectionLost);
          return;
        }
        await client.query('select pg_notify($1, $2)', [releaseChannel, this.id]);
        if (signal.aborted || Date.now() > deadline) throw ERRORS.ERR_LOCK_TIMEOUT;
        await sleep(50);
      }
    } catch (error) {
      client.release();
      throw error;
    }
  }

  /** Once lost, the upload may already be locked again by the request resuming it: leave that one be. */
  private forget(): void {
    if (this.locker.held.get(this.id) === this.release) this.locker.held.delete(this.id);
  }

  async unlock(): Promise<void> {
    const client = this.client;
    if (!client) throw new Error(`unlocking upload ${this.id}, which this request does not hold`);
    this.client = undefined;
    client.removeListener('error', this.onConnectionLost);
    this.forget();
    try {
      await client.query('select pg_advisory_unlock(hashtextextended($1, 0))', [this.id]);
      client.release();
    } catch (error) {
      // A connection that failed to unlock must not go back to the pool still holding the lock.
      client.release(error instanceof Error ? error : true);
    }
  }
}
