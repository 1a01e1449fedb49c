import { sql } from 'kysely';
import type { Db } from './database.ts';
import type { Upload } from './schema.ts';
import { statusesWhere } from './uploadStatusFacts.ts';

/**
 * The statements of the Idempotency-Key rule (hooks/idempotentCreation.ts holds the rule). A key
 * names its upload until it expires (the database's clock, one for every instance) and while the
 * upload is on the main line (`uploading` … `ready`): once it left it (rejected, infected, failed,
 * expired, deleted) a retry would get nothing it can use, so the key is free for a new creation.
 * `owner` null is the server running open (nobody in particular): one owner, like any other.
 */

/** The states in which a key still names its upload. */
const namingStates = statusesWhere((facts) => !facts.withReason);

/** A creation's claim on an owner's key: what it asks for (its fingerprint), and for how long the key names its upload. */
export interface KeyClaim {
  key: string;
  fingerprint: string;
  ttlMs: number;
}

const ownerKey = (owner: string | null, key: string) => sql<boolean>`idempotency_keys.key = ${key} and idempotency_keys.owner is not distinct from ${owner}`;
const unexpired = sql<boolean>`idempotency_keys.expires_at > now()`;
const namesLiveUpload = sql<boolean>`exists (select 1 from uploads where uploads.id = idempotency_keys.upload_id and uploads.status = any(${namingStates}::text[]))`;

/** The upload `owner`'s `key` names, with the fingerprint of the creation that made it; undefined when it names none (any more). */
export async function findKeyedUpload(db: Db, owner: string | null, key: string): Promise<{ fingerprint: string; upload: Upload } | undefined> {
  const row = await db
    .selectFrom('idempotency_keys')
    .innerJoin('uploads', 'uploads.id', 'idempotency_keys.upload_id')
    .selectAll('uploads')
    .select('idempotency_keys.fingerprint as key_fingerprint')
    .where(ownerKey(owner, key))
    .where(unexpired)
    .where('uploads.status', 'in', namingStates)
    .executeTakeFirst();
  if (!row) return undefined;
  const { key_fingerprint, ...upload } = row;
  return { fingerprint: key_fingerprint, upload };
}

/**
 * Gives `key` to the new upload `uploadId` for `ttlMs`, in the creation's transaction `trx`; false
 * when it still names another upload. Of two transactions inserting one key, the second waits on
 * the unique index for the first to end, then takes the key (the first rolled back) or finds it
 * taken. A key expired or whose upload left the main line is taken over, in statements of their
 * own: a statement sees what was committed when it began, so the insert's own conflict clause
 * would not see the upload of the transaction it waited for.
 */
export async function claimKey(trx: Db, owner: string | null, { key, fingerprint, ttlMs }: KeyClaim, uploadId: string): Promise<boolean> {
  const expiresAt = sql<Date>`now() + ${ttlMs} * interval '1 millisecond'`;
  const inserted = await trx
    .insertInto('idempotency_keys')
    .values({ owner, key, fingerprint, upload_id: uploadId, expires_at: expiresAt })
    .onConflict((oc) => oc.columns(['key', 'owner']).doNothing())
    .returning('upload_id')
    .executeTakeFirst();
  if (inserted) return true;
  const held = await trx
    .selectFrom('idempotency_keys')
    .select(['upload_id', sql<boolean>`${unexpired} and ${namesLiveUpload}`.as('naming')])
    .where(ownerKey(owner, key))
    .executeTakeFirst();
  if (!held || held.naming) return false;
  // Guarded by the upload it named: of two creations taking over one key, the second finds it changed.
  const taken = await trx
    .updateTable('idempotency_keys')
    .set({ fingerprint, upload_id: uploadId, created_at: sql<Date>`now()`, expires_at: expiresAt })
    .where(ownerKey(owner, key))
    .where('upload_id', '=', held.upload_id)
    .executeTakeFirst();
  return taken.numUpdatedRows === 1n;
}

/** Frees `key` if it still names `uploadId`: the creation that made it failed, and a retry must not be given it. */
export async function forgetKey(db: Db, owner: string | null, key: string, uploadId: string): Promise<void> {
  await db.deleteFrom('idempotency_keys').where(ownerKey(owner, key)).where('upload_id', '=', uploadId).execute();
}

/** Deletes the keys past their time; returns how many. */
export async function deleteExpiredKeys(db: Db): Promise<number> {
  const result = await db.deleteFrom('idempotency_keys').where('expires_at', '<=', sql<Date>`now()`).executeTakeFirst();
  return Number(result.numDeletedRows);
}
