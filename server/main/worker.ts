import { runProcess } from './runProcess.ts';
import { scheduleCleanup } from '../jobs/cleanup.ts';
import { createJobRunner, openServices } from './start.ts';

/**
 * `npm run worker`: the job runner and the cleanup, against the same Postgres and store as the
 * servers; without DATABASE_URL, the embedded Postgres under DATA_DIR (shared with `npm start`).
 */
await runProcess('worker', async (config, log) => {
  const services = await openServices(config, log);
  const runner = createJobRunner(services);
  await runner.start();
  // Servers started with RUN_JOBS=false leave the cleanup to the workers. Several processes may
  // run it at once: each step is idempotent (a removed upload is removed again, a status only
  // moves from `uploading`), so the worst case is a little repeated work.
  const stopCleanup = scheduleCleanup(services.context, config.cleanupIntervalMs);
  log.info({ worker: runner.workerId, store: services.context.storage.describe, scanner: services.scanner?.describe() ?? 'off' }, 'worker running');
  return async () => {
    stopCleanup();
    await runner.stop();
    await services.pool.close();
    await services.database.close();
  };
});
