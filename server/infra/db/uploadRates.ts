import { sql } from 'kysely';
import type { Db } from './database.ts';

/**
 * The upload rate limit as a token bucket per client address in the database, so every
 * instance sharing it counts against the same limit. A bucket holds up to `perMinute` tokens
 * and refills at `perMinute` a minute: an empty one is full again after one minute, so a
 * bucket untouched for a minute means the same as none. Times are the database's, one clock
 * for every instance.
 */

export type RateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/**
 * Takes a token for one upload from `address`'s bucket, or refuses and says how long until one
 * has refilled. One upsert: the row lock orders concurrent requests from any process, and each
 * sees the count the one before it left. `greatest` keeps time from running backwards when a
 * request that started earlier (an earlier `now()`) takes the lock second.
 */
export async function takeUploadToken(db: Db, address: string, perMinute: number): Promise<RateDecision> {
  const perSecond = perMinute / 60;
  const elapsed = sql`greatest(0, extract(epoch from now() - upload_rates.refilled_at)::float8)`;
  const refilled = sql`least(${perMinute}::float8, upload_rates.tokens + ${elapsed} * ${perSecond}::float8)`;
  const { rows } = await sql<{ allowed: boolean; tokens: number }>`
    insert into upload_rates (address, tokens, refilled_at, allowed)
    values (${address}, ${perMinute - 1}, now(), true)
    on conflict (address) do update set
      tokens = ${refilled} - case when ${refilled} >= 1 then 1 else 0 end,
      refilled_at = greatest(upload_rates.refilled_at, now()),
      allowed = ${refilled} >= 1
    returning allowed, tokens`.execute(db);
  const { allowed, tokens } = rows[0]!;
  return allowed ? { allowed } : { allowed, retryAfterSeconds: Math.ceil((1 - tokens) / perSecond) };
}

/** Deletes the buckets that have refilled (unused for a minute), so the table holds only recent addresses; returns how many. */
export async function pruneUploadRates(db: Db): Promise<number> {
  const result = await db.deleteFrom('upload_rates').where('refilled_at', '<', sql<Date>`now() - interval '1 minute'`).executeTakeFirst();
  return Number(result.numDeletedRows);
}
