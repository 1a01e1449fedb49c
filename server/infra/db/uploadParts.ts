import { sql } from 'kysely';
import type { Db } from './database.ts';
import { quotaRefusal, type Quota, type QuotaRefusal } from './quotas.ts';
import type { UploadPart } from './schema.ts';

/**
 * Every read and write of `upload_parts`: the partial uploads of the tus concatenation
 * extension, held apart from `uploads` (no status, no events, no listing) until a final takes them.
 */

export interface NewPart {
  id: string;
  owner: string | null;
  size: number;
  expires_at: Date;
}

/**
 * Records a partial upload within its owner's quota: its bytes count; the owner's unused partials
 * together count as one upload in flight, so only the first of a parallel upload can be refused for that.
 */
export async function createPart(db: Db, part: NewPart, quota?: Quota): Promise<QuotaRefusal | undefined> {
  return db.transaction().execute(async (trx) => {
    const refusal = await quotaRefusal(trx, quota, part.owner, { kind: 'partial', bytes: part.size });
    if (!refusal) await trx.insertInto('upload_parts').values(part).execute();
    return refusal;
  });
}

/** The partial upload if `owner` may see it (as findOwnUpload decides for uploads). */
export async function findOwnPart(db: Db, id: string, owner: string | null): Promise<UploadPart | undefined> {
  return db
    .selectFrom('upload_parts')
    .selectAll()
    .where('id', '=', id)
    .where((eb) => (owner === null ? eb('owner', 'is', null) : eb('owner', '=', owner)))
    .executeTakeFirst();
}

export async function findPart(db: Db, id: string): Promise<UploadPart | undefined> {
  return db.selectFrom('upload_parts').selectAll().where('id', '=', id).executeTakeFirst();
}

/** A final that could not be assembled gives its parts back, so the client may try it again. */
export async function releaseParts(db: Db, finalId: string): Promise<void> {
  await db.updateTable('upload_parts').set({ final_id: null }).where('final_id', '=', finalId).execute();
}

export async function deleteParts(db: Db, ids: string[]): Promise<void> {
  if (ids.length > 0) await db.deleteFrom('upload_parts').where('id', 'in', ids).execute();
}

/**
 * Parts nobody will use: unused past their expiry, or taken by a final that is no longer
 * `uploading` (assembled, or given up) whose request did not remove them (the process died).
 */
export async function findLeftoverParts(db: Db, now: Date, limit: number): Promise<string[]> {
  const rows = await db
    .selectFrom('upload_parts as p')
    .leftJoin('uploads as u', 'u.id', 'p.final_id')
    .select('p.id')
    .where((eb) =>
      eb.or([
        eb.and([eb('p.final_id', 'is', null), eb('p.expires_at', '<', now)]),
        eb.and([eb('p.final_id', 'is not', null), sql<boolean>`u.status is distinct from 'uploading'`]),
      ]),
    )
    .orderBy('p.expires_at')
    .limit(limit)
    .execute();
  return rows.map((row) => row.id);
}
