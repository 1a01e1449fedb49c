import type { Db } from '../server/infra/db/database.ts';
import { claimKey, forgetKey, type KeyClaim } from '../server/infra/db/idempotencyKeys.ts';
import { findUpload } from '../server/infra/db/records.ts';
import type { NewUpload, Upload, UploadEventRow, UploadStatus } from '../server/infra/db/schema.ts';
import type { Quota, QuotaRefusal } from '../server/infra/db/quotas.ts';
import { insertUpload, moveUpload, recordCreation, type TransitionColumns } from '../server/infra/db/uploadStates.ts';
import { uploadStatusFacts } from '../server/infra/db/uploadStatusFacts.ts';

/**
 * What may happen to an upload, and the only code that changes `uploads.status`. What being in
 * a state means (whether it is entered with a reason, keeps bytes, is terminal) is written once
 * in uploadStatusFacts.ts; each edge here says which times its move stamps.
 */
interface Edge {
  stamps?: TransitionColumns;
}

const plain: Edge = {};
/** The last byte is stored: the upload has its final size and no longer expires. */
const finished: Edge = { stamps: { finished_at: 'now', expires_at: null } };
const madeReady: Edge = { stamps: { ready_at: 'now' } };

export const transitions = {
  // failed: a final upload (concatenation) the store could not assemble from its parts.
  uploading: { received: finished, rejected: plain, failed: plain, expired: plain, deleted: plain },
  received: { inspecting: plain, failed: plain, deleted: plain },
  inspecting: { processing: plain, ready: madeReady, rejected: plain, infected: plain, failed: plain, deleted: plain },
  processing: { ready: madeReady, failed: plain, deleted: plain },
  ready: { deleted: plain },
  rejected: { deleted: plain },
  infected: { deleted: plain },
  // A requeued job's upload goes back to where that job runs from.
  failed: { received: plain, processing: plain, deleted: plain },
  expired: { deleted: plain },
  deleted: {},
} as const satisfies Record<UploadStatus, Partial<Record<UploadStatus, Edge>>>;

/** The states an upload can move to `to` from, by the table. */
export function statesInto(to: UploadStatus): UploadStatus[] {
  return (Object.keys(transitions) as UploadStatus[]).filter((from) => to in transitions[from]);
}

function edgeOf(from: UploadStatus, to: UploadStatus): Edge | undefined {
  return (transitions[from] as Partial<Record<UploadStatus, Edge>>)[to];
}

/** One recorded transition (or creation, `from` null), as upload_events holds it. */
export interface UploadEvent {
  uploadId: string;
  seq: number;
  from: UploadStatus | null;
  to: UploadStatus;
  reason: string | null;
  at: Date;
}

/**
 * A transition: made (the upload as it is now, and its event), or refused because the upload was
 * not in a state it may move from (it moved on, e.g. was deleted; `current` is how it was found,
 * undefined when there is no such upload). A refusal is the caller's to handle.
 */
export type Transition = { ok: true; upload: Upload; event: UploadEvent } | { ok: false; current: Upload | undefined };

/** The facts a transition records with the new state. */
export type UploadFacts = Pick<TransitionColumns, 'size' | 'offset' | 'detected_type' | 'sha256' | 'media'>;

export interface Move {
  /** The states the caller moves the upload from; by default every state the table allows. */
  from?: readonly UploadStatus[];
  reason?: string;
  facts?: UploadFacts;
  /**
   * The caller's own statements that belong to this transition (queueing the next job, recording
   * outputs): run in its transaction once the upload moved, before the extensions, so they see them.
   */
  with?: (trx: Db, upload: Upload) => Promise<void>;
}

/**
 * Statements run in every transition's transaction (and a creation's), after it is written: the
 * webhooks enqueue their deliveries here, with the status JSON as it is at that moment.
 */
export type InTransition = (trx: Db, event: UploadEvent, upload: Upload) => Promise<void>;

/** A creation: made, or refused by the owner's quota, because its parts were taken, or because its Idempotency-Key names another upload. */
export type Creation = { ok: true; upload: Upload; event: UploadEvent } | { ok: false; refused: QuotaRefusal | 'parts taken' | 'key taken' };

/** A new upload's record: always created `uploading`. */
export type NewUploadRecord = Omit<NewUpload, 'status' | 'event_seq' | 'reclaimed_at'>;

export class UploadLifecycle {
  private readonly extensions: readonly InTransition[];
  constructor(extensions: readonly InTransition[] = []) {
    this.extensions = extensions;
  }

  /**
   * Records a new upload (`uploading`, event 1) within its owner's quota, or the refusal. A final
   * upload (concatenation) claims its partial uploads `parts` with it; refused with 'parts taken'
   * when one is not the owner's unclaimed partial. With a `key`, the key is given to the upload in
   * the same transaction, first (a creation racing with the same key waits here for this one to
   * end); refused with 'key taken' when it names another upload.
   */
  async create(db: Db, record: NewUploadRecord, quota?: Quota, parts?: readonly string[], key?: KeyClaim): Promise<Creation> {
    return inTransaction(db, async (trx) => {
      const owner = record.owner ?? null;
      if (key && !(await claimKey(trx, owner, key, record.id))) return { ok: false, refused: 'key taken' };
      const refused = await insertUpload(trx, { ...record, status: 'uploading', event_seq: 1 }, quota, parts);
      if (refused) {
        if (key) await forgetKey(trx, owner, key.key, record.id);
        return { ok: false, refused };
      }
      const event = eventOf(await recordCreation(trx, { id: record.id, status: 'uploading' }));
      const upload = (await findUpload(trx, record.id))!;
      for (const extension of this.extensions) await extension(trx, event, upload);
      return { ok: true, upload, event };
    });
  }

  /**
   * Moves an upload to `to`, from one of `move.from`, in one guarded statement with its event
   * and NOTIFY, all in one transaction (the caller's, when `db` is one). A move the table does
   * not allow, or one without the reason it needs, is a programming error and throws.
   */
  async move(db: Db, id: string, to: UploadStatus, move: Move = {}): Promise<Transition> {
    const from = move.from ?? statesInto(to);
    if (from.length === 0) throw new Error(`no move leads into ${to}`);
    for (const state of from) if (!edgeOf(state, to)) throw new Error(`an upload cannot go from ${state} to ${to}`);
    const needsReason = uploadStatusFacts[to].withReason;
    if (needsReason !== (move.reason !== undefined)) throw new Error(`${from.join(', ')} → ${to} ${needsReason ? 'needs' : 'takes no'} reason`);
    // One statement sets the same columns whichever state it moves from.
    const stamps = new Set(from.map((state) => JSON.stringify(edgeOf(state, to)!.stamps ?? {})));
    if (stamps.size > 1) throw new Error(`the moves into ${to} from ${from.join(', ')} stamp different times: move from one at a time`);
    return inTransaction(db, async (trx) => {
      const moved = await moveUpload(trx, id, from, to, move.reason ?? null, { ...move.facts, ...edgeOf(from[0]!, to)!.stamps });
      if (!moved) return { ok: false, current: await findUpload(trx, id) };
      const event = eventOf(moved.event);
      await move.with?.(trx, moved.upload);
      for (const extension of this.extensions) await extension(trx, event, moved.upload);
      return { ok: true, upload: moved.upload, event };
    });
  }
}

function inTransaction<T>(db: Db, run: (trx: Db) => Promise<T>): Promise<T> {
  return db.isTransaction ? run(db) : db.transaction().execute(run);
}

function eventOf(row: UploadEventRow): UploadEvent {
  return { uploadId: row.upload_id, seq: row.seq, from: row.from_status, to: row.to_status, reason: row.reason, at: row.at };
}
