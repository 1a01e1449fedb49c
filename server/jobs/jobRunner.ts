import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { Db, OpenDatabase } from '../infra/db/database.ts';
import { attemptsUsed, claimJob, extendLease, jobsChannel, recordProgress, retryJob, settleJob, waitJob } from '../infra/db/jobQueue.ts';
import type { Job, JobKind } from '../infra/db/schema.ts';
import { statusesWhere } from '../infra/db/uploadStatusFacts.ts';
import type { Logger } from '../infra/settings/log.ts';
import { unavailableDependency } from '../infra/settings/unavailableDependency.ts';
import type { UploadLifecycle } from '../../hooks/uploadLifecycle.ts';

/** What a job hands back: its DB writes, committed together with the job's completion. */
export interface JobOutcome {
  result: Record<string, unknown>;
  commit(trx: Db): Promise<void>;
  /** Runs once the commit is durable (e.g. deleting bytes that are no longer referenced). */
  afterCommit?(): Promise<void>;
}

export interface JobContext {
  signal: AbortSignal;
  log: Logger;
  reportProgress(percent: number): Promise<void>;
}

export type JobHandler = (job: Job, context: JobContext) => Promise<JobOutcome>;

/**
 * Thrown by a handler when retrying cannot help (the input itself is bad). Its message is shown
 * to the upload's owner (the job's error, the upload's reason): a short reason, no internals.
 */
export class PermanentJobError extends Error {}

/** Thrown by a handler for a failure worth retrying whose message is fit to show the owner as it is (a short reason, no internals). */
export class RetryableJobError extends Error {}

/**
 * Thrown by a handler when a service the job needs cannot be reached (clamd down or
 * restarting): nothing is wrong with the job, so it waits, re-queued with backoff without
 * using an attempt, until the service answers or it has waited `waitMaxMs` in all.
 * The message (with addresses) goes to the logs; `shown` is what the owner is told.
 */
export class ServiceUnreachableError extends Error {
  readonly shown: string;
  readonly waitMaxMs: number;
  /** The setting that bounds the wait, named in the reason when the job gives up. */
  readonly waitMaxSetting: string;

  constructor(
    message: string,
    shown: string,
    waitMaxMs: number,
    waitMaxSetting: string,
  ) {
    super(message);
    this.shown = shown;
    this.waitMaxMs = waitMaxMs;
    this.waitMaxSetting = waitMaxSetting;
  }
}

/** What the owner is told of any other error: its message may hold hosts, paths or stack details, which stay in the logs. */
export const internalErrorReason = 'an internal error (details in the server logs)';

/** Waiting jobs look again at least this often, so a service that is back is used soon. */
const maxWaitBackoffMs = 30_000;

/**
 * Job kinds that share a number of slots. Inspection (I/O and clamd) and media work (the
 * piscina pool) get lanes of their own, so neither waits behind the other.
 */
export interface JobLane {
  kinds: JobKind[];
  concurrency: number;
}

/** How one kind of job is retried. */
export interface JobPolicy {
  /** The wait before the next run after `attempt` counted runs failed. */
  retryDelayMs(attempt: number): number;
}

const pipelinePolicy: JobPolicy = { retryDelayMs: (attempt) => backoffMs(attempt) };

/** How a run of a job ended: finished, put back in the queue, or failed for good. */
export type JobEnd = 'done' | 'retry' | 'failed';

export interface JobRunnerOptions {
  database: OpenDatabase;
  /** Giving up on a job fails its upload: through the lifecycle, the only writer of upload states. */
  lifecycle: UploadLifecycle;
  handlers: Partial<Record<JobKind, JobHandler>>;
  /** Per kind; a kind not named here is retried from 1 s up. */
  policies?: Partial<Record<JobKind, JobPolicy>>;
  log: Logger;
  lanes: JobLane[];
  leaseMs: number;
  pollMs: number;
  /** How long a job waits for an unreachable store (STORE_WAIT_MAX). */
  storeWaitMaxMs: number;
  /** Told of every run this runner settled (e.g. for metrics); a run whose lease passed on is not its to tell. */
  onJobEnd?(kind: JobKind, end: JobEnd, seconds: number): void;
}

/** The states a pipeline job works on an upload in: giving up on the job fails the upload from any of them (a deleted one stays deleted). */
const awaitingJob = statusesWhere((facts) => facts.awaitsJob);
/** The jobs an upload needs to become ready; giving up on any other (a webhook delivery) never fails the upload. */
const failsItsUpload: ReadonlySet<JobKind> = new Set<JobKind>(['inspect', 'image', 'video', 'audio']);

/** One lane's claim loop state: the jobs it runs and how it is woken. */
class LaneState {
  readonly running = new Set<Promise<void>>();
  /**
   * Set by every wake(), cleared before each claim. A notification that arrives while a claim
   * is under way (the claim may not have seen the new job) finds no sleeper to wake; the flag
   * makes the loop claim again instead of sleeping a whole poll interval. The same holds for
   * stop() called while a claim is under way.
   */
  wakeRequested = false;
  private wakeUp: (() => void) | undefined;

  readonly lane: JobLane;
  constructor(lane: JobLane) {
    this.lane = lane;
  }

  wake(): void {
    this.wakeRequested = true;
    this.wakeUp?.();
  }

  async sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.wakeUp = undefined;
  }
}

/**
 * Claims jobs from Postgres and runs them, each lane `concurrency` at a time. The same runner
 * works in the server process (embedded default) and in `npm run worker` processes; any
 * number may run.
 */
export class JobRunner {
  readonly workerId = `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private readonly lanes: LaneState[];
  private readonly stopping = new AbortController();
  private loops: Promise<void>[] = [];
  private unlisten: (() => Promise<void>) | undefined;
  private stopped: Promise<void> | undefined;
  private readonly options: JobRunnerOptions;

  constructor(options: JobRunnerOptions) {
    this.options = options;
    this.lanes = options.lanes.map((lane) => new LaneState(lane));
  }

  async start(): Promise<void> {
    // The notification's payload is the queued job's kind: only its lane needs to claim. After
    // the LISTEN connection was lost, every lane looks, for jobs queued while it was down.
    this.unlisten = await this.options.database.listen(jobsChannel, (kind) => this.wake(kind), () => this.wake());
    this.loops = this.lanes.map((lane) => this.claimLoop(lane));
  }

  /** Stops claiming, lets running jobs finish (their leases cover a hard stop). Safe to call twice. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.stopping.abort();
      this.wake();
      await Promise.all(this.loops);
      await Promise.allSettled(this.lanes.flatMap((lane) => [...lane.running]));
      await this.unlisten?.();
    })();
    return this.stopped;
  }

  /** Wakes the lanes that run `kind` (all lanes when no kind is given or known). */
  wake(kind?: string): void {
    const lanes = this.lanes.filter((state) => state.lane.kinds.some((k) => k === kind));
    for (const state of lanes.length > 0 ? lanes : this.lanes) state.wake();
  }

  private async claimLoop(state: LaneState): Promise<void> {
    const { database, log, leaseMs, pollMs } = this.options;
    const { running, lane } = state;
    while (!this.stopping.signal.aborted) {
      if (running.size >= lane.concurrency) {
        await Promise.race(running);
        continue;
      }
      let job: Job | undefined;
      state.wakeRequested = false;
      try {
        job = await claimJob(database.db, this.workerId, leaseMs, lane.kinds);
      } catch (error) {
        log.error({ err: error }, 'claiming a job failed');
      }
      if (job) {
        const run = this.run(job).finally(() => running.delete(run));
        running.add(run);
        continue;
      }
      // Woken (a job was queued, or stop() was called) while the claim was under way.
      if (state.wakeRequested) continue;
      await state.sleep(pollMs);
    }
  }

  private async run(job: Job): Promise<void> {
    const { database, handlers, leaseMs } = this.options;
    const db = database.db;
    const log = this.options.log.child({ job: job.id, kind: job.kind, upload: job.upload_id, attempt: job.attempts });
    const started = Date.now();
    const ended = (end: JobEnd) => this.options.onJobEnd?.(job.kind, end, (Date.now() - started) / 1000);
    const handler = handlers[job.kind];
    if (!handler) {
      if (await this.giveUp(job, `no handler for ${job.kind} jobs in this version`, log)) ended('failed');
      return;
    }
    if (attemptsUsed(job) > job.max_attempts) {
      if (await this.giveUp(job, `${job.kind} stopped ${job.max_attempts} times without finishing (worker lost)`, log)) ended('failed');
      return;
    }
    const lost = new AbortController();
    const heartbeat = setInterval(() => {
      extendLease(db, job, this.workerId, leaseMs)
        .then((held) => held || lost.abort(new Error('lease lost')))
        .catch((err: unknown) => log.warn({ err }, 'extending the lease failed'));
    }, leaseMs / 3);
    let afterCommit: (() => Promise<void>) | undefined;
    try {
      const context: JobContext = {
        signal: lost.signal,
        log,
        reportProgress: (percent) => recordProgress(db, job, this.workerId, percent),
      };
      const outcome = await handler(job, context);
      const committed = await db.transaction().execute(async (trx) => {
        if (!(await settleJob(trx, job, this.workerId, { status: 'done', result: outcome.result }))) return false;
        await outcome.commit(trx);
        return true;
      });
      if (!committed) {
        log.warn('job finished after its lease passed to another worker; its result was dropped');
        return;
      }
      log.info({ ms: Date.now() - started, result: outcome.result }, 'job done');
      ended('done');
      afterCommit = outcome.afterCommit;
    } catch (error) {
      const end = await this.afterFailure(job, error, started, log);
      if (end) ended(end);
      return;
    } finally {
      clearInterval(heartbeat);
    }
    // The job is done and committed: a failure from here on is not the job's (retrying or
    // failing it would be wrong, and is impossible now that it is settled).
    await afterCommit?.().catch((err: unknown) => log.error({ err }, 'clean-up after the job failed'));
  }

  /** Retries, waits or gives up after a run that threw; returns how the run ended, if this run recorded it. */
  private async afterFailure(job: Job, error: unknown, started: number, log: Logger): Promise<JobEnd | undefined> {
    const unreachable = this.unreachableService(error);
    // Stored and shown to the owner; the error itself is logged below.
    const shown = error instanceof PermanentJobError || error instanceof RetryableJobError ? error.message : unreachable ? unreachable.shown : internalErrorReason;
    const giveUp = async (reason: string) => ((await this.giveUp(job, reason, log, error)) ? 'failed' : undefined);
    let again: { requeue: typeof retryJob; delayMs: number; note: string };
    if (unreachable) {
      // Both ends of the wait so far are database times (the claim set updated_at); this run's own length is local.
      const waitedMs = (job.waiting_since ? job.updated_at.getTime() - job.waiting_since.getTime() : 0) + (Date.now() - started);
      if (waitedMs >= unreachable.waitMaxMs) {
        return giveUp(`${shown}; still unreachable after ${seconds(waitedMs)} (${unreachable.waitMaxSetting} is ${seconds(unreachable.waitMaxMs)})`);
      }
      again = { requeue: waitJob, delayMs: backoffMs(job.waits + 1, maxWaitBackoffMs), note: 'a service the job needs is unreachable; waiting (no attempt used)' };
    } else if (error instanceof PermanentJobError || attemptsUsed(job) >= job.max_attempts) {
      return giveUp(shown);
    } else {
      again = { requeue: retryJob, delayMs: this.policyOf(job).retryDelayMs(attemptsUsed(job)), note: 'job failed; will retry' };
    }
    const requeued = await again.requeue(this.options.database.db, job, this.workerId, shown, again.delayMs).catch((err: unknown) => {
      log.error({ err }, 'requeueing failed');
      return undefined;
    });
    if (requeued === false) log.warn({ err: error }, 'job failed after its lease passed to another worker');
    if (!requeued) return undefined;
    log.warn({ err: error, retryInMs: again.delayMs }, again.note);
    return 'retry';
  }

  /**
   * The service a failed run could not reach, if that is why it failed: what its handler said, or
   * the store — a rule for every kind of job (reading the original, writing outputs), so none
   * spends its attempts on an outage of the store.
   */
  private unreachableService(error: unknown): ServiceUnreachableError | undefined {
    if (error instanceof ServiceUnreachableError) return error;
    if (unavailableDependency(error) !== 'store') return undefined;
    return new ServiceUnreachableError((error as Error).message, 'the store is unreachable', this.options.storeWaitMaxMs, 'STORE_WAIT_MAX');
  }

  private policyOf(job: Job): JobPolicy {
    return this.options.policies?.[job.kind] ?? pipelinePolicy;
  }

  /**
   * The job is over for good: it becomes `failed`, with the reason kept, and so does its upload
   * when the upload cannot go on without it (a pipeline job). Returns whether this run recorded it.
   */
  private async giveUp(job: Job, reason: string, log: Logger, error?: unknown): Promise<boolean> {
    return this.options.database.db
      .transaction()
      .execute(async (trx) => {
        if (!(await settleJob(trx, job, this.workerId, { status: 'failed', error: reason }))) {
          log.warn({ reason }, 'job failed after its lease passed to another worker');
          return false;
        }
        if (failsItsUpload.has(job.kind)) {
          const failed = await this.options.lifecycle.move(trx, job.upload_id, 'failed', { from: awaitingJob, reason: `${job.kind}: ${reason}` });
          if (!failed.ok) log.info({ status: failed.current?.status }, 'the upload had moved on; its state is kept');
        }
        log.error({ reason, err: error }, 'job failed for good');
        return true;
      })
      .catch((err: unknown) => {
        log.error({ err, reason }, 'recording the failure failed');
        return false;
      });
  }
}

/** 1 s, 2 s, 4 s … (from `firstMs`) capped (at 5 minutes unless told), with jitter so retries from many jobs spread out. */
export function backoffMs(attempt: number, capMs = 300_000, firstMs = 1000): number {
  const base = Math.min(firstMs * 2 ** (attempt - 1), capMs);
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

const seconds = (ms: number) => `${Math.round(ms / 100) / 10}s`;
