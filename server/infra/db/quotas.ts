import { sql, type RawBuilder } from 'kysely';
import type { Db } from './database.ts';
import { statusesWhere } from './uploadStatusFacts.ts';

/**
 * The quota rule, decided here only: whether an owner may hold one more upload, counting its
 * uploads and its unused partial uploads (concatenation). Creating an upload (uploadStates.ts)
 * and a partial (uploadParts.ts) both ask here, under one lock per owner.
 */

/** What one owner may hold at once; 0 / undefined: no limit. */
export interface Quota {
  uploadsInFlight: number;
  bytes: number | undefined;
}

export type QuotaRefusal = { quota: 'uploads in flight'; limit: number; used: number } | { quota: 'bytes'; limit: number; used: number };

/**
 * What a creation adds to its owner's holdings: `bytes`, and an upload in flight unless it is a
 * partial joining unused ones (together they count as one) or a final taking its `parts` (it
 * counts as the one they were, and their bytes become its own).
 */
export type Addition = { kind: 'upload' | 'partial'; bytes: number } | { kind: 'final'; bytes: number; parts: readonly string[] };

/** What an owner holds now, as the quotas count it. */
interface QuotaUse {
  /** Unfinished uploads, not expired. */
  uploading: number;
  /** Whether unused partial uploads are under way. */
  hasParts: boolean;
  bytes: number;
}

/**
 * Undefined when `owner` may hold `adding` besides what it holds, else the refusal. Run in the
 * creation's transaction: the owner's lock is held until it ends, so concurrent creations on any
 * instance see each other and the quota holds exactly.
 */
export async function quotaRefusal(trx: Db, quota: Quota | undefined, owner: string | null | undefined, adding: Addition): Promise<QuotaRefusal | undefined> {
  if (!owner || !quota || (quota.uploadsInFlight === 0 && quota.bytes === undefined)) return undefined;
  await sql`select pg_advisory_xact_lock(hashtextextended(${`quota:${owner}`}, 0))`.execute(trx);
  const taken = adding.kind === 'final' ? adding.parts : [];
  const notTaken = taken.length > 0 ? sql`and id not in (${sql.join(taken)})` : sql``;
  const { rows } = await sql<QuotaUse>`
    select
      (select count(*) from uploads where owner = ${owner} and status = 'uploading' and expires_at > now())::int as uploading,
      exists (select 1 from upload_parts where owner = ${owner} and final_id is null and expires_at > now() ${notTaken}) as "hasParts",
      ${heldBytes(owner, { parts: taken })} as bytes
  `.execute(trx);
  const use = rows[0]!;
  const inFlight = use.uploading + Number(use.hasParts);
  const addsOneInFlight = adding.kind === 'upload' || (adding.kind === 'partial' && !use.hasParts);
  if (addsOneInFlight && quota.uploadsInFlight > 0 && inFlight >= quota.uploadsInFlight) return { quota: 'uploads in flight', limit: quota.uploadsInFlight, used: inFlight };
  if (quota.bytes !== undefined && use.bytes + adding.bytes > quota.bytes) return { quota: 'bytes', limit: quota.bytes, used: use.bytes };
  return undefined;
}

/** The bytes `upload` of `owner` may still grow into (a deferred length): the quota less what its other holdings keep; undefined for no limit. */
export async function bytesLeft(db: Db, quota: Quota, owner: string | null, upload: string): Promise<number | undefined> {
  if (!owner || quota.bytes === undefined) return undefined;
  const { rows } = await sql<{ bytes: number }>`select ${heldBytes(owner, { upload })} as bytes`.execute(db);
  return Math.max(0, quota.bytes - rows[0]!.bytes);
}

/**
 * Stored bytes: the owner's uploads in a state that keeps them with their outputs (an HLS ladder
 * can weigh as much as the original), and its unused partials, but for those named.
 */
function heldBytes(owner: string, except: { upload?: string; parts?: readonly string[] }): RawBuilder<number> {
  const otherUploads = except.upload === undefined ? sql`` : sql`and id <> ${except.upload}`;
  const otherParts = except.parts?.length ? sql`and id not in (${sql.join(except.parts)})` : sql``;
  return sql<number>`(
    (select coalesce(sum(coalesce(size, "offset") + (select coalesce(sum(o.size), 0) from outputs o where o.upload_id = uploads.id)), 0) from uploads
      where owner = ${owner} and status in (${sql.join(statusesWhere((facts) => facts.keepsBytes))}) and reclaimed_at is null ${otherUploads})
    + (select coalesce(sum(size), 0) from upload_parts where owner = ${owner} and final_id is null ${otherParts}))::bigint`;
}
