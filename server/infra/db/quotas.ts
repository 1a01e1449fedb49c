import { sql } from 'kysely';
import type { Db } from './database.ts';
import { holdingBytes } from './records.ts';

/**
 * How the quotas count an owner's holdings: uploads and unused partial uploads (concatenation).
 * Creating an upload (uploadStates.ts) and a partial (uploadParts.ts) both count here, under one lock per owner.
 */

/** What one owner may hold at once; 0 / undefined: no limit. */
export interface Quota {
  uploadsInFlight: number;
  bytes: number | undefined;
}

export type QuotaRefusal = { quota: 'uploads in flight'; limit: number; used: number } | { quota: 'bytes'; limit: number; used: number };

/** What an owner holds now, as the quotas count it. */
export interface QuotaUse {
  /** Unfinished uploads, not expired. */
  uploading: number;
  /** Whether unused partial uploads (concatenation) are under way: together they count as one upload in flight. */
  hasParts: boolean;
  /** Stored bytes: uploads that hold bytes, and unused partials. */
  bytes: number;
}

/** Counts an owner's use; `exceptParts` are partials a final is taking (its own size counts instead). */
export async function quotaUse(db: Db, owner: string, exceptParts: readonly string[] = []): Promise<QuotaUse> {
  const notTaken = exceptParts.length > 0 ? sql`and id not in (${sql.join(exceptParts)})` : sql``;
  const { rows } = await sql<QuotaUse>`
    select
      (select count(*) from uploads where owner = ${owner} and status = 'uploading' and expires_at > now())::int as uploading,
      exists (select 1 from upload_parts where owner = ${owner} and final_id is null and expires_at > now() ${notTaken}) as "hasParts",
      ((select coalesce(sum(coalesce(size, "offset")), 0) from uploads where owner = ${owner} and status in (${sql.join(holdingBytes)}) and reclaimed_at is null)
        + (select coalesce(sum(size), 0) from upload_parts where owner = ${owner} and final_id is null ${notTaken}))::bigint as bytes
  `.execute(db);
  return rows[0]!;
}

/** Serialises quota decisions for one owner across instances, for the rest of the transaction. */
export async function lockOwnerQuota(trx: Db, owner: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtextextended(${`quota:${owner}`}, 0))`.execute(trx);
}

/** Whether a quota is set that an owner's creations must be counted against. */
export function counts(quota: Quota | undefined, owner: string | null | undefined): quota is Quota {
  return Boolean(owner && quota && (quota.uploadsInFlight > 0 || quota.bytes !== undefined));
}
