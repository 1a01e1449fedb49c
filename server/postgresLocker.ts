import { setTimeout as sleep } from 'node:timers/promises';
import { ERRORS, type Lock, type Locker, type RequestRelease } from '@tus/utils';
import pg from 'pg';

const releaseChannel = 'tus_lock_release';

/**
 * tus locks that hold across server instances: a Postgres session advisory lock per upload,
 * on a connection kept for as long as the lock is held. A request that finds the lock taken
 * asks the holder to let go over NOTIFY (the holder may be another instance), as tus's own
 * in-memory locker does within one process, so a client resuming after a dropped connection
 * is not kept waiting by its own half-dead earlier request.
 */
export class PostgresLocker implements Locker {
  /** Locks held by this process, with the callback that asks their request to finish. */
  readonly held = new Map<string, RequestRelease>();
  private listener: pg.Client | undefined;

  constructor(
    readonly pool: pg.Pool,
    readonly acquireTimeoutMs: number,
  ) {}

  static async create(databaseUrl: string, acquireTimeoutMs = 30_000): Promise<PostgresLocker> {
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 30 });
    // An idle connection that dies is dropped by the pool; unheard, its 'error' would end the process.
    pool.on('error', () => undefined);
    const locker = new PostgresLocker(pool, acquireTimeoutMs);
    const listener = new pg.Client({ connectionString: databaseUrl });
    listener.on('error', () => undefined);
    await listener.connect();
    listener.on('notification', (message) => {
      const release = message.payload ? locker.held.get(message.payload) : undefined;
      void release?.();
    });
    await listener.query(`listen ${releaseChannel}`);
    locker.listener = listener;
    return locker;
  }

  newLock(id: string): Lock {
    return new PostgresLock(this, id);
  }

  async close(): Promise<void> {
    await this.listener?.end();
    await this.pool.end();
  }
}

class PostgresLock implements Lock {
  private client: pg.PoolClient | undefined;

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
          this.locker.held.set(this.id, requestRelease);
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

  async unlock(): Promise<void> {
    const client = this.client;
    if (!client) throw new Error(`unlocking upload ${this.id}, which this request does not hold`);
    this.client = undefined;
    this.locker.held.delete(this.id);
    try {
      await client.query('select pg_advisory_unlock(hashtextextended($1, 0))', [this.id]);
      client.release();
    } catch (error) {
      // A connection that failed to unlock must not go back to the pool still holding the lock.
      client.release(error instanceof Error ? error : true);
    }
  }
}
