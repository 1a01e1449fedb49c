import { setTimeout as sleep } from 'node:timers/promises';
import { ERRORS, type Lock, type Locker, type RequestRelease } from '@tus/utils';
import type pg from 'pg';
import { DedicatedConnection } from '../pg/dedicatedConnection.ts';
import { defaultDatabaseHeartbeat, type DatabaseHeartbeat } from '../settings/config.ts';
import type { Logger } from '../settings/log.ts';

/** How the lock session shows up in pg_stat_activity (tests and the bench look for it). */
export const lockSessionName = 'tus-upload locks';

const releaseChannel = 'tus_lock_release';
/** How often a request waiting for a taken lock tries again (and asks the holder again to let go). */
const retryMs = 50;

/**
 * While the lock session is re-established no lock can be taken. A request waits this long for it
 * (past the session's longest reconnect backoff), then the client is told to retry: tus-js-client
 * takes any error but 423 on its resuming HEAD as "start a new upload", so a short wait saves the
 * upload.
 */
const sessionWaitMs = 10_000;
export const LOCKS_UNAVAILABLE = { status_code: 503, body: 'Upload locks are unavailable while the database connection is re-established; retry shortly\n' };

/** A lock this process holds, or is asking Postgres for. */
interface Claim {
  requestRelease: RequestRelease;
  /** The session the advisory lock was taken on; undefined while it is being asked for. */
  session: pg.Client | undefined;
}

/**
 * tus locks that hold across server instances: a Postgres session advisory lock per upload, every
 * one of them on this instance's single lock session (a DedicatedConnection), so a thousand uploads being
 * written cost one connection, not a thousand. A request that finds the lock taken asks the holder
 * to let go over NOTIFY (the holder may be another instance), as tus's own in-memory locker does
 * within one process, so a client resuming after a dropped connection is not kept waiting by its own
 * half-dead earlier request. Losing the session loses every lock on it: each holder is told to stop,
 * its PATCH ends with what it wrote, and its client resumes.
 */
export class PostgresLocker implements Locker {
  /**
   * Claims by upload id. Advisory locks are re-entrant within a session, so Postgres cannot keep two
   * requests of this process apart: this map does, before Postgres is asked.
   */
  private readonly claims = new Map<string, Claim>();

  private readonly session: DedicatedConnection;
  readonly acquireTimeoutMs: number;

  private constructor(
    session: DedicatedConnection,
    acquireTimeoutMs: number,
  ) {
    this.session = session;
    this.acquireTimeoutMs = acquireTimeoutMs;
  }

  static async create(databaseUrl: string, log: Logger, options: { acquireTimeoutMs?: number; heartbeat?: DatabaseHeartbeat } = {}): Promise<PostgresLocker> {
    let locker: PostgresLocker | undefined;
    const session = await DedicatedConnection.open({
      connectionString: databaseUrl,
      name: lockSessionName,
      channels: [releaseChannel],
      onNotify: (id) => locker?.releaseRequested(id),
      onLost: (client) => locker?.sessionLost(client),
      heartbeat: options.heartbeat ?? defaultDatabaseHeartbeat,
      log,
    });
    locker = new PostgresLocker(session, options.acquireTimeoutMs ?? 30_000);
    return locker;
  }

  /** @tus/utils' Locker: "creates a Lock instance for a given resource identifier". */
  newLock(id: string): Lock {
    return new PostgresLock(this, id);
  }

  async close(): Promise<void> {
    await this.session.close();
  }

  /**
   * One attempt: the claim when `id` is now held for `requestRelease`. Otherwise its holder, in
   * this process or another, has been asked to let go.
   */
  async tryAcquire(id: string, requestRelease: RequestRelease): Promise<Claim | 'no session' | undefined> {
    const local = this.claims.get(id);
    if (local) {
      void local.requestRelease();
      return undefined;
    }
    const session = this.session.live;
    if (!session) return 'no session';
    const claim: Claim = { requestRelease, session: undefined };
    this.claims.set(id, claim);
    try {
      // One round trip: take the lock, or ask whoever holds it to let go. A CTE with a volatile
      // function is evaluated once, so the lock is tried exactly once.
      const [row] = await this.session.query<{ ok: boolean }>(
        session,
        `with attempt as (select pg_try_advisory_lock(hashtextextended($1, 0)) as ok)
         select ok, case when not ok then pg_notify($2, $1) end from attempt`,
        [id, releaseChannel],
      );
      // The session may have ended as the answer came in: a lock taken on it is gone already.
      if (row?.ok && this.session.live === session) {
        claim.session = session;
        return claim;
      }
    } catch (error) {
      this.claims.delete(id);
      // A session that died under the query: the caller tries again on the next one until its
      // deadline. Any other failure (Postgres's lock table full, say) is the request's error.
      if (this.session.live === session) throw error;
      return undefined;
    }
    this.claims.delete(id);
    return undefined;
  }

  async release(id: string, claim: Claim): Promise<void> {
    // A lock taken on a session that has since ended was freed with it. The unlock fails only
    // when the session is going (a timeout drops it): that frees the lock as well.
    if (claim.session && claim.session === this.session.live) {
      await this.session.query(claim.session, 'select pg_advisory_unlock(hashtextextended($1, 0))', [id]).catch(() => undefined);
    }
    // Only now may another request of this process ask Postgres: the session no longer holds it.
    this.claims.delete(id);
  }

  private releaseRequested(id: string): void {
    const claim = this.claims.get(id);
    if (claim?.session) void claim.requestRelease();
  }

  private sessionLost(client: pg.Client): void {
    for (const claim of this.claims.values()) if (claim.session === client) void claim.requestRelease();
  }
}

/**
 * @tus/utils' Lock: "lock(id, cancelReq): Acquires a lock on a resource identified by 'id'. If the
 * lock is already held by another request, the 'cancelReq' callback is provided to signal the
 * current lock holder to release the lock." and "unlock(id): Releases the lock held on the resource".
 */
class PostgresLock implements Lock {
  private claim: Claim | undefined;

  private readonly locker: PostgresLocker;
  private readonly id: string;

  constructor(
    locker: PostgresLocker,
    id: string,
  ) {
    this.locker = locker;
    this.id = id;
  }

  async lock(signal: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    const deadline = Date.now() + this.locker.acquireTimeoutMs;
    const sessionDeadline = Date.now() + sessionWaitMs;
    for (;;) {
      const attempt = await this.locker.tryAcquire(this.id, requestRelease);
      if (attempt === 'no session' && Date.now() > sessionDeadline) throw LOCKS_UNAVAILABLE;
      if (attempt && attempt !== 'no session') {
        this.claim = attempt;
        return;
      }
      if (signal.aborted || Date.now() > deadline) throw ERRORS.ERR_LOCK_TIMEOUT;
      await sleep(retryMs);
    }
  }

  async unlock(): Promise<void> {
    const claim = this.claim;
    if (!claim) throw new Error(`unlocking upload ${this.id}, which this request does not hold`);
    this.claim = undefined;
    await this.locker.release(this.id, claim);
  }
}
