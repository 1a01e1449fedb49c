import type { AddressInfo } from 'node:net';
import { createScanner, type Scanner } from '../../processors/clamd.ts';
import type { HookContext } from '../../hooks/hookContext.ts';
import { UploadLifecycle } from '../../hooks/uploadLifecycle.ts';
import { enqueueWebhooks } from '../../hooks/uploadWebhooks.ts';
import { createLinkSigners, statusLinkSigning } from '../auth/signedLinks.ts';
import { inspectUpload } from '../jobs/inspectUpload.ts';
import { processMedia } from '../jobs/processMedia.ts';
import { createMediaPool, type MediaPool } from '../../processors/mediaPool.ts';
import { createApp } from '../http/app.ts';
import type { Config } from '../infra/settings/config.ts';
import { migrateToLatest, openDatabase, type OpenDatabase } from '../infra/db/database.ts';
import { createHttpServer } from '../http/httpServer.ts';
import { stoppableHandler } from '../http/httpShutdown.ts';
import { removeDeadProcessesTempFiles } from '../infra/processes/processTempFiles.ts';
import { scheduleCleanup } from '../jobs/cleanup.ts';
import { deliverWebhook, webhookPolicy } from '../jobs/deliverWebhook.ts';
import { JobRunner, type JobRunnerOptions } from '../jobs/jobRunner.ts';
import type { Logger } from '../infra/settings/log.ts';
import { createMetrics } from '../http/metrics.ts';
import { PostgresLocker } from '../infra/locks/postgresLocker.ts';
import { openWarning } from '../http/routes/health.ts';
import { createStorage } from '../infra/store/createStorage.ts';
import { unavailableDependency } from '../infra/settings/unavailableDependency.ts';
import { tusEdge } from '../tus/tusEdge.ts';
import { currentStoreRequest } from '../tus/tusRequest.ts';
import { openUploadEventHub } from '../http/uploadEventHub.ts';

export interface Services {
  context: HookContext;
  database: OpenDatabase;
  scanner: Scanner | undefined;
  pool: MediaPool;
}

/**
 * The upload lifecycle every process (server, worker, command) uses: one place to add what must
 * happen in each transition's transaction.
 */
export function createLifecycle(config: Config): UploadLifecycle {
  const webhooks = config.webhooks;
  // A worker's webhook bodies carry the links a request to PUBLIC_URL would: signed the same way.
  return new UploadLifecycle(webhooks ? [enqueueWebhooks(webhooks, { base: webhooks.publicUrl, ...statusLinkSigning(createLinkSigners(config)) })] : []);
}

/** Database (migrated), store and scanner: what both the server and a worker process need. */
export async function openServices(config: Config, log: Logger): Promise<Services> {
  const database = await openDatabase(config, log);
  await migrateToLatest(database.db, log);
  await removeDeadProcessesTempFiles(log);
  // The S3 store learns of the tus request it serves through the edge's request scope.
  const storage = await createStorage(config, log, currentStoreRequest);
  // A wrong bucket or credentials stop the start; a store that is away does not (a process restarted
  // during its outage would fail again and again): requests answer as in any outage, jobs wait.
  await storage.ping().catch((error: unknown) => {
    if (unavailableDependency(error) !== 'store') throw error;
    log.warn({ err: error, store: storage.describe }, 'the store is unreachable; starting anyway');
  });
  const scanner = config.scan === 'required' && config.clamd ? createScanner(config.clamd) : undefined;
  // Threads start with the first media task: a process that runs no media jobs pays nothing for the pool.
  const pool = createMediaPool(config.workerThreads);
  return { context: { db: database.db, config, storage, log, lifecycle: createLifecycle(config) }, database, scanner, pool };
}

/** Deliveries in flight per process: each is one request waiting on the app (up to WEBHOOK_TIMEOUT). */
const webhookConcurrency = 8;

export function createJobRunner({ context, database, scanner, pool }: Services, onJobEnd?: JobRunnerOptions['onJobEnd']): JobRunner {
  const { config, log } = context;
  const media = processMedia(context, pool);
  const webhooks = config.webhooks;
  return new JobRunner({
    database,
    lifecycle: context.lifecycle,
    log: log.child({ part: 'jobs' }),
    handlers: { inspect: inspectUpload(context, scanner), image: media, video: media, audio: media, ...(webhooks && { webhook: deliverWebhook(context.db, webhooks) }) },
    policies: webhooks && { webhook: webhookPolicy(webhooks) },
    lanes: [
      { kinds: ['inspect'], concurrency: config.workerThreads },
      // One media job more than there are threads: its task waits in the pool's queue, so a thread
      // that finishes starts the next image at once instead of idling while a job is claimed and
      // its input made ready. At most one job per process waits like this (other workers may be idle).
      { kinds: ['image', 'video', 'audio'], concurrency: config.workerThreads + 1 },
      // Deliveries wait on the app, not on this machine: a lane of their own, so a slow or absent
      // app never holds up an inspection or a media job. Without WEBHOOK_URL they stay queued.
      ...(webhooks ? [{ kinds: ['webhook' as const], concurrency: webhookConcurrency }] : []),
    ],
    leaseMs: config.jobLeaseMs,
    pollMs: config.jobPollMs,
    storeWaitMaxMs: config.storeWaitMaxMs,
    onJobEnd,
  });
}

export interface RunningServer {
  url: string;
  services: Services;
  runner: JobRunner | undefined;
  close(): Promise<void>;
}

/** Starts everything one server process runs; `close()` stops it in reverse order. */
export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  const services = await openServices(config, log);
  const { context, database, scanner } = services;
  // Locks in Postgres, also for the embedded one (over its socket URL): another server or a
  // worker may share it. All of this instance's locks go over one lock session.
  const locker = await PostgresLocker.create(database.url, log.child({ part: 'locks' }), { heartbeat: config.databaseHeartbeat });
  // Per server: worker processes serve no HTTP, so their job timings are not exported.
  const metrics = createMetrics(context.db, log.child({ part: 'metrics' }));
  // Receiving bytes needs no clamd: an upload-only server's readiness must not follow clamd's
  // restarts, or a load balancer would take every upload server out at once.
  // One LISTEN for every event stream this instance serves.
  const hub = await openUploadEventHub(database, log.child({ part: 'events' }));
  const app = createApp(context, tusEdge(context, locker, metrics.observeConcatenation), config.runJobs ? scanner : undefined, metrics, hub);
  const runner = config.runJobs ? createJobRunner(services, metrics.observeJob) : undefined;
  await runner?.start();
  const stopCleanup = config.runJobs ? scheduleCleanup(context, config.cleanupIntervalMs) : undefined;

  const handler = stoppableHandler(app.callback());
  const http = createHttpServer(handler.listener, config.http).listen(config.port, config.host);
  await new Promise<void>((resolve, reject) => http.once('listening', resolve).once('error', reject));
  const { port } = http.address() as AddressInfo;
  const url = `http://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${port}`;
  log.info(
    { url, store: context.storage.describe, database: database.describe, scanner: scanner?.describe() ?? 'off', jobs: config.runJobs ? 'in this process' : 'in worker processes' },
    'listening',
  );
  if (!scanner) log.warn('virus scanning is off: set CLAMD_SOCKET or CLAMD_HOST to scan every upload');
  if (config.auth.mode === 'open') log.warn(openWarning);

  return {
    url,
    services,
    runner,
    close: async () => {
      // Not http.close() alone: it waits for every busy connection, and a trickling PATCH may never end.
      // Event streams end at once (their clients reconnect elsewhere by Last-Event-ID), not after SHUTDOWN_GRACE.
      await Promise.all([handler.stop(http, config.http.shutdownGraceMs, log), hub.close()]);
      stopCleanup?.();
      await runner?.stop();
      await services.pool.close();
      await locker.close();
      await database.close();
    },
  };
}
