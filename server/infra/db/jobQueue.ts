import { sql, type QueryCreator } from 'kysely';
import type { Db } from './database.ts';
import type { Database, Job, JobKind, JobStatus, PipelineJobKind } from './schema.ts';
import { uploadProgressChannel } from './uploadEventLog.ts';

/**
 * The job table as a queue. A worker claims one job at a time with FOR UPDATE SKIP LOCKED,
 * holds it under a lease it keeps extending, and finishes it only while the lease is still its
 * own: a worker that died loses its jobs when their leases run out, and a late one cannot
 * overwrite the work of the worker that took over.
 *
 * "Its own" means this worker *and* this attempt: every claim increments `attempts`, so
 * (lease_holder, attempts) names one run of a job. A runner whose heartbeats failed for longer
 * than the lease can claim its own expired job again; matched on the worker id alone, the
 * stale first run could extend, requeue or settle the second one.
 */

/** Attempts a job has used: its runs but those that waited for an unreachable service. */
export const attemptsUsed = (job: Pick<Job, 'attempts' | 'waits'>) => job.attempts - job.waits;

/** Wakes workers in every process sharing the database as soon as a job is queued. */
export const jobsChannel = 'upload_jobs';

/**
 * One job per (upload, kind): queueing it again is a no-op. A new job wakes the workers in
 * every process sharing the database when the transaction commits; the payload names its kind,
 * so a runner wakes only the lane that runs it. One statement: the insert and its NOTIFY in
 * one round trip.
 */
export async function enqueueJob(db: Db, uploadId: string, kind: PipelineJobKind, maxAttempts: number): Promise<void> {
  await sql`
    with queued as (
      insert into jobs (upload_id, kind, max_attempts) values (${uploadId}, ${kind}, ${maxAttempts})
      on conflict (upload_id, kind) where kind <> 'webhook' do nothing
      returning kind)
    select pg_notify(${jobsChannel}, kind) from queued`.execute(db);
}

/** An upload event to send as a webhook: its body is final, built at the transition. */
export interface NewWebhookMessage {
  /** `webhook-id`. */
  id: string;
  uploadId: string;
  seq: number;
  type: string;
  body: string;
}

/**
 * Stores the message and queues one `webhook` job per URL, in one statement (run it in the
 * transition's transaction: the event and its deliveries commit together or not at all). A
 * message for an event already stored is a no-op.
 */
export async function enqueueWebhook(db: Db, message: NewWebhookMessage, urls: readonly string[], maxAttempts: number): Promise<void> {
  await sql`
    with message as (
      insert into webhook_messages (id, upload_id, seq, type, body)
      values (${message.id}, ${message.uploadId}, ${message.seq}, ${message.type}, ${message.body})
      on conflict (upload_id, seq) do nothing
      returning id, upload_id),
    queued as (
      insert into jobs (upload_id, kind, max_attempts, webhook_id, url)
      select message.upload_id, 'webhook', ${maxAttempts}, message.id, target.url
        from message cross join unnest(${urls}::text[]) as target(url)
      returning kind)
    select pg_notify(${jobsChannel}, kind) from queued`.execute(db);
}

/** What a webhook job sends: its message's id and bytes. */
export async function findWebhookMessage(db: Db, job: Pick<Job, 'webhook_id'>) {
  if (!job.webhook_id) return undefined;
  return db.selectFrom('webhook_messages').select(['id', 'type', 'body']).where('id', '=', job.webhook_id).executeTakeFirst();
}

/** Claims the next runnable job of one of `kinds`, if any. */
export async function claimJob(db: Db, workerId: string, leaseMs: number, kinds: readonly JobKind[]): Promise<Job | undefined> {
  const { rows } = await sql<Job>`
    update jobs
       set status = 'running', attempts = attempts + 1, lease_holder = ${workerId},
           lease_expires_at = now() + ${leaseMs} * interval '1 millisecond', updated_at = now()
     where id = (
       select id from jobs
        where kind = any(${kinds}::text[])
          and ((status = 'queued' and run_after <= now())
            or (status = 'running' and lease_expires_at < now()))
        order by run_after, id
        limit 1
        for update skip locked)
    returning *`.execute(db);
  return rows[0];
}

/**
 * An update of `job` that applies only while this run (worker and attempt) still holds it: a
 * run that lost its lease, even to its own worker's next attempt, can no longer change the job.
 */
function updateHeldRun(db: QueryCreator<Database>, job: Job, workerId: string) {
  return db
    .updateTable('jobs')
    .where('id', '=', job.id)
    .where('lease_holder', '=', workerId)
    .where('attempts', '=', job.attempts)
    .where('status', '=', 'running');
}

/** Keeps a long job's lease alive; false when another worker has taken the job over. */
export async function extendLease(db: Db, job: Job, workerId: string, leaseMs: number): Promise<boolean> {
  const result = await updateHeldRun(db, job, workerId)
    .set({ lease_expires_at: sql`now() + ${leaseMs} * interval '1 millisecond'`, updated_at: sql`now()` })
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** The job's progress in percent, told on the progress channel by the same statement (for the event streams). */
export async function recordProgress(db: Db, job: Job, workerId: string, percent: number): Promise<void> {
  await db
    .with('recorded', (qb) => updateHeldRun(qb, job, workerId).set({ progress: percent, updated_at: sql`now()` }).returning(['upload_id', 'progress']))
    .selectFrom('recorded')
    .select(sql`pg_notify(${uploadProgressChannel}, json_build_object('id', upload_id, 'percent', progress)::text)`.as('notified'))
    .execute();
}

/** Marks the job done or failed, only if this run still holds it; false when it no longer does. */
export async function settleJob(
  db: Db,
  job: Job,
  workerId: string,
  outcome: { status: 'done'; result: Record<string, unknown> } | { status: 'failed'; error: string },
): Promise<boolean> {
  const result = await updateHeldRun(db, job, workerId)
    .set({
      status: outcome.status,
      ...(outcome.status === 'done' ? { result: JSON.stringify(outcome.result), progress: 100 } : { last_error: outcome.error }),
      waiting_since: null,
      lease_holder: null,
      lease_expires_at: null,
      updated_at: sql`now()`,
    })
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** Puts a job back in the queue to run again after `delayMs`, only if this run still holds it. */
export async function retryJob(db: Db, job: Job, workerId: string, error: string, delayMs: number): Promise<boolean> {
  const result = await updateHeldRun(db, job, workerId)
    .set({
      status: 'queued',
      last_error: error,
      // A counted failure means the service it may have waited for was reached.
      waiting_since: null,
      run_after: sql`now() + ${delayMs} * interval '1 millisecond'`,
      lease_holder: null,
      lease_expires_at: null,
      updated_at: sql`now()`,
    })
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/**
 * Puts a job back to wait for a service it needs that could not be reached (clamd), only if
 * this run still holds it. Like retryJob, but the run does not use an attempt: `waits` counts
 * it instead of `attempts` going back down, so (lease_holder, attempts) still never names two
 * runs. `waiting_since` keeps when the wait began, across runs.
 */
export async function waitJob(db: Db, job: Job, workerId: string, error: string, delayMs: number): Promise<boolean> {
  const result = await updateHeldRun(db, job, workerId)
    .set({
      status: 'queued',
      waits: sql`waits + 1`,
      waiting_since: sql`coalesce(waiting_since, now())`,
      last_error: error,
      run_after: sql`now() + ${delayMs} * interval '1 millisecond'`,
      lease_holder: null,
      lease_expires_at: null,
      updated_at: sql`now()`,
    })
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

export interface JobCount {
  kind: JobKind;
  status: JobStatus;
  count: number;
  /** Queued rows only: how long the oldest job that may run now has waited since it could; null when none may. */
  waitedSeconds: number | null;
}

/** Jobs per kind and state, with the queue lag, for /metrics: one statement, one scan. */
export async function countJobs(db: Db): Promise<JobCount[]> {
  const { rows } = await sql<JobCount>`
    select kind, status, count(*) as count,
           extract(epoch from now() - min(run_after) filter (where status = 'queued' and run_after <= now())) as "waitedSeconds"
      from jobs
     group by kind, status`.execute(db);
  return rows;
}

/** An upload's pipeline job that ran out of attempts or failed for good, if it has one (a failed webhook fails no upload). */
export async function findFailedJob(db: Db, uploadId: string): Promise<(Job & { kind: PipelineJobKind }) | undefined> {
  return db
    .selectFrom('jobs')
    .selectAll()
    .where('upload_id', '=', uploadId)
    .where('status', '=', 'failed')
    .where('kind', '<>', 'webhook')
    .orderBy('id', 'desc')
    .$narrowType<{ kind: PipelineJobKind }>()
    .executeTakeFirst();
}

/**
 * Puts a job back in the queue with `maxAttempts` fresh attempts and wakes the workers: a failed
 * one (a requeue after an outage), or a done one (a ready upload getting outputs it lacks); false
 * when it is not in that state (any more). `attempts` keeps counting, as with lease_holder it
 * names one run: `max_attempts` moves up instead, past the attempts already used.
 */
export async function requeueJob(db: Db, job: Pick<Job, 'id'>, maxAttempts: number, from: 'failed' | 'done' = 'failed'): Promise<boolean> {
  const { rows } = await sql`
    with requeued as (
      update jobs
         set status = 'queued', max_attempts = attempts - waits + ${maxAttempts}, run_after = now(), progress = null,
             waiting_since = null, lease_holder = null, lease_expires_at = null, updated_at = now()
       where id = ${job.id} and status = ${from}
      returning kind)
    select pg_notify(${jobsChannel}, kind) from requeued`.execute(db);
  return rows.length > 0;
}

/**
 * Webhook deliveries that gave up (`failed`), with their message's type: of the messages or
 * uploads `ids` names (a `webhook-id` or an upload id each), or all of them.
 */
export async function findGivenUpDeliveries(db: Db, ids: readonly string[] | 'all') {
  let query = db
    .selectFrom('jobs')
    .innerJoin('webhook_messages', 'webhook_messages.id', 'jobs.webhook_id')
    .select(['jobs.id', 'jobs.upload_id', 'jobs.url', 'jobs.attempts', 'jobs.last_error', 'webhook_messages.id as webhook_id', 'webhook_messages.type'])
    .where('jobs.kind', '=', 'webhook')
    .where('jobs.status', '=', 'failed');
  if (ids !== 'all') query = query.where((eb) => eb.or([eb('webhook_messages.id', 'in', ids), eb('jobs.upload_id', 'in', ids)]));
  return query.orderBy('jobs.id').execute();
}

/** An upload's finished job of `kind`, if it has one. */
export async function findDoneJob(db: Db, uploadId: string, kind: PipelineJobKind): Promise<Job | undefined> {
  return db.selectFrom('jobs').selectAll().where('upload_id', '=', uploadId).where('kind', '=', kind).where('status', '=', 'done').executeTakeFirst();
}
