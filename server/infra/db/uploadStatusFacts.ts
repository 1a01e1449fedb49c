import { uploadStatuses, type UploadStatus } from './schema.ts';

/**
 * What being in each upload state means, written once. The lifecycle's transition table
 * (hooks/uploadLifecycle.ts) says which moves exist and builds on these; every other list of
 * states (quotas, cleanup, event streams, downloads, webhooks, the job runner) is read from here.
 * It sits in the database layer because the quota and cleanup queries need it too.
 */
export interface StatusFacts {
  /** Off the main line: entered with a reason, which a move back onto the main line clears. */
  withReason: boolean;
  /** Its bytes and outputs stay in the store and count toward its owner's QUOTA_BYTES; the other states keep none. */
  keepsBytes: boolean;
  /** A job of the pipeline is queued or running for it: giving up on that job fails the upload. */
  awaitsJob: boolean;
  /**
   * The pipeline never moves it on, only a request does (a delete, a requeue): an event stream
   * ends once it told it, apps are told of it by webhook, and unless it is `ready` nothing will be served.
   */
  terminal: boolean;
}

export const uploadStatusFacts: Readonly<Record<UploadStatus, Readonly<StatusFacts>>> = {
  uploading: { withReason: false, keepsBytes: true, awaitsJob: false, terminal: false },
  received: { withReason: false, keepsBytes: true, awaitsJob: true, terminal: false },
  inspecting: { withReason: false, keepsBytes: true, awaitsJob: true, terminal: false },
  processing: { withReason: false, keepsBytes: true, awaitsJob: true, terminal: false },
  ready: { withReason: false, keepsBytes: true, awaitsJob: false, terminal: true },
  rejected: { withReason: true, keepsBytes: false, awaitsJob: false, terminal: true },
  infected: { withReason: true, keepsBytes: false, awaitsJob: false, terminal: true },
  // Kept FAILED_RETENTION for a requeue; cleanup reclaims them after that.
  failed: { withReason: true, keepsBytes: true, awaitsJob: false, terminal: true },
  expired: { withReason: true, keepsBytes: false, awaitsJob: false, terminal: true },
  deleted: { withReason: true, keepsBytes: false, awaitsJob: false, terminal: true },
};

/** The states whose facts pass `test`, in the order of `uploadStatuses`. */
export function statusesWhere(test: (facts: StatusFacts) => boolean): UploadStatus[] {
  return uploadStatuses.filter((status) => test(uploadStatusFacts[status]));
}
