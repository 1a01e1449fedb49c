// Samples, from outside, the sessions a server has open on its Postgres database and the
// advisory locks they hold: the figures the slow-uploads bench reports.
import pg from 'pg';
import { lockSessionName } from '../../server/infra/locks/postgresLocker.ts';

export interface SessionPeaks {
  /** Most connections to the database at once, of any kind. */
  connections: number;
  /** Most of them that were lock sessions. */
  lockSessions: number;
  /** Most advisory locks held at once. */
  advisoryLocks: number;
  samples: number;
}

/** Polls pg_stat_activity and pg_locks for `database` every `intervalMs` until `stop()`. */
export async function sampleSessions(adminUrl: string, database: string, intervalMs = 200): Promise<{ stop(): Promise<SessionPeaks> }> {
  // Connected to the admin database, so the sampler is not among what it counts.
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  const peaks: SessionPeaks = { connections: 0, lockSessions: 0, advisoryLocks: 0, samples: 0 };
  const sample = async () => {
    const { rows } = await client.query<{ connections: number; lock_sessions: number; advisory_locks: number }>(
      `select (select count(*) from pg_stat_activity where datname = $1)::int as connections,
              (select count(*) from pg_stat_activity where datname = $1 and application_name = $2)::int as lock_sessions,
              (select count(*) from pg_locks where locktype = 'advisory' and granted
                 and database = (select oid from pg_database where datname = $1))::int as advisory_locks`,
      [database, lockSessionName],
    );
    const row = rows[0]!;
    peaks.connections = Math.max(peaks.connections, row.connections);
    peaks.lockSessions = Math.max(peaks.lockSessions, row.lock_sessions);
    peaks.advisoryLocks = Math.max(peaks.advisoryLocks, row.advisory_locks);
    peaks.samples++;
  };
  let running = true;
  const loop = (async () => {
    while (running) {
      await sample();
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      await client.end();
      return peaks;
    },
  };
}
