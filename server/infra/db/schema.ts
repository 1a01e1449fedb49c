import type { ColumnType, Generated, Insertable, JSONColumnType, Selectable } from "kysely";

/** The upload states (docs/architecture.md, hooks/uploadLifecycle.ts); `reason` is set whenever a state is off the main line. */
export const uploadStatuses = [
  'uploading', 'received', 'inspecting', 'processing', 'ready',
  'rejected', 'infected', 'failed', 'expired', 'deleted',
] as const;
export type UploadStatus = (typeof uploadStatuses)[number];

export const jobStatuses = ['queued', 'running', 'done', 'failed'] as const;
export type JobStatus = (typeof jobStatuses)[number];
export const jobKinds = ['inspect', 'image', 'video', 'audio', 'webhook'] as const;
export type JobKind = (typeof jobKinds)[number];
/** The jobs an upload goes through on its way to `ready`; a webhook job only tells of it. */
export type PipelineJobKind = Exclude<JobKind, 'webhook'>;

/**
 * How an upload's bytes come: through this server by tus (or the IETF draft), or straight to the
 * bucket by an S3 multipart upload or a presigned POST (direct uploads, server/http/routes/directUploads.ts).
 */
export const uploadProtocols = ['tus', 's3-multipart', 's3-post'] as const;
export type UploadProtocol = (typeof uploadProtocols)[number];

/** A nullable column that inserts may leave out. */
type Maybe<T> = ColumnType<T | null, T | null | undefined, T | null>;
// JSON goes in as text: a string means the same whatever the driver does with objects.
type Json<T extends object | null> = JSONColumnType<T>;
type MaybeJson<T extends object> = ColumnType<T | null, string | null | undefined, string | null>;

/** Narrowings of the type policy for one upload: a smaller size limit, fewer types. */
export interface UploadLimits {
  maxSize?: number;
  types?: string[];
}

/** Media facts of an upload; keys depend on the kind of file. */
export type MediaMetadata = Record<string, unknown>;

export interface UploadsTable {
  id: string;
  owner: Maybe<string>;
  filename: Maybe<string>;
  safe_filename: string;
  claimed_type: Maybe<string>;
  detected_type: Maybe<string>;
  size: Maybe<number>;
  offset: Generated<number>;
  sha256: Maybe<string>;
  storage_key: string;
  status: UploadStatus;
  reason: Maybe<string>;
  tus_metadata: Json<Record<string, string | null>>;
  /** The type policy narrowed for this upload by its creator's token or the app's check. */
  limits: ColumnType<UploadLimits, string | undefined, string>;
  media: MaybeJson<MediaMetadata>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
  expires_at: Maybe<Date>;
  finished_at: Maybe<Date>;
  ready_at: Maybe<Date>;
  /** A final upload of the concatenation extension: its Upload-Concat as sent (`final;<url> …`). */
  upload_concat: Maybe<string>;
  /** The seq of the upload's latest event in upload_events. */
  event_seq: Generated<number>;
  /** When cleanup made sure what the upload no longer keeps (bytes, outputs) is gone. */
  reclaimed_at: Maybe<Date>;
  protocol: ColumnType<UploadProtocol, UploadProtocol | undefined, UploadProtocol>;
  /** A direct multipart upload's UploadId in the bucket; null for every other upload. */
  multipart_upload_id: Maybe<string>;
}

export interface UploadEventsTable {
  upload_id: string;
  /** 1 for the creation, then one more per transition. */
  seq: number;
  /** Null for the creation. */
  from_status: UploadStatus | null;
  to_status: UploadStatus;
  reason: string | null;
  at: Generated<Date>;
}

export interface JobsTable {
  id: Generated<number>;
  upload_id: string;
  kind: JobKind;
  status: Generated<JobStatus>;
  /** Runs so far, counted or not: with lease_holder it names one run. */
  attempts: Generated<number>;
  max_attempts: number;
  /** Runs that found a service the job needs (clamd) unreachable and waited: not counted against max_attempts. */
  waits: Generated<number>;
  /** When the current wait for that service began; null while the job is not waiting. */
  waiting_since: Maybe<Date>;
  run_after: Generated<Date>;
  lease_holder: Maybe<string>;
  lease_expires_at: Maybe<Date>;
  last_error: Maybe<string>;
  progress: Maybe<number>;
  result: MaybeJson<Record<string, unknown>>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
  /** Webhook jobs only: the message they deliver, and where to. */
  webhook_id: Maybe<string>;
  url: Maybe<string>;
}

/** One upload event as a webhook: sent as it is, byte for byte, on every attempt at every URL. */
export interface WebhookMessagesTable {
  /** `webhook-id`. */
  id: string;
  upload_id: string;
  /** The event's sequence number in upload_events. */
  seq: number;
  type: string;
  body: string;
  created_at: Generated<Date>;
}

export interface OutputsTable {
  upload_id: string;
  name: string;
  content_type: string;
  size: number;
  width: number | null;
  height: number | null;
  storage_key: string;
  created_at: Generated<Date>;
}

/** One client address's token bucket for creating uploads (see uploadRates.ts). */
export interface UploadRatesTable {
  address: string;
  tokens: number;
  refilled_at: Date;
  /** Whether the last creation was let through: the upsert's answer, as RETURNING has no old values. */
  allowed: boolean;
}

/** A partial upload (tus concatenation): a piece of a file, held apart from `uploads` until a final takes it. */
export interface UploadPartsTable {
  id: string;
  owner: Maybe<string>;
  size: number;
  /** The final upload it was taken into; null while unused. */
  final_id: Maybe<string>;
  created_at: Generated<Date>;
  expires_at: Date;
}

/** An owner's Idempotency-Key and the upload the creation that sent it made (hooks/idempotentCreation.ts). */
export interface IdempotencyKeysTable {
  owner: Maybe<string>;
  key: string;
  /** What that creation asked for; a retry with the same key must ask for the same. */
  fingerprint: string;
  upload_id: string;
  created_at: Generated<Date>;
  expires_at: Date;
}

export interface Database {
  uploads: UploadsTable;
  jobs: JobsTable;
  outputs: OutputsTable;
  upload_events: UploadEventsTable;
  upload_rates: UploadRatesTable;
  upload_parts: UploadPartsTable;
  webhook_messages: WebhookMessagesTable;
  idempotency_keys: IdempotencyKeysTable;
}

export type Upload = Selectable<UploadsTable>;
export type NewUpload = Insertable<UploadsTable>;
export type Job = Selectable<JobsTable>;
export type Output = Selectable<OutputsTable>;
export type UploadPart = Selectable<UploadPartsTable>;
export type UploadEventRow = Selectable<UploadEventsTable>;
