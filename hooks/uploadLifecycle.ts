import type { Db } from '../server/db/database.ts';
import { changeStatus } from '../server/db/records.ts';
import type { JobKind } from '../server/db/schema.ts';

/** The states a job on the upload runs in: giving up on the job fails the upload from any of them. */
const failableStates = ['received', 'inspecting', 'processing'] as const;

/** A job on the upload is over for good: the upload becomes `failed`, with the job's reason kept. */
export async function failUploadOfJob(db: Db, uploadId: string, kind: JobKind, reason: string): Promise<void> {
  await changeStatus(db, uploadId, [...failableStates], { status: 'failed', reason: `${kind}: ${reason}` });
}
