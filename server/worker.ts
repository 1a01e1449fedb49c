import { ConfigError } from './config.ts';
import { runProcess } from './runProcess.ts';
import { createJobRunner, openServices } from './start.ts';

/** `npm run worker`: only the job runner, against the same Postgres and store as the servers. */
await runProcess('worker', async (config, log) => {
  if (!config.databaseUrl) {
    throw new ConfigError(['DATABASE_URL: a worker process needs a Postgres server shared with the servers (the embedded database lives inside `npm start`)']);
  }
  const services = await openServices(config, log);
  const runner = createJobRunner(services);
  await runner.start();
  log.info({ worker: runner.workerId, store: services.context.storage.describe, scanner: services.scanner?.describe() ?? 'off' }, 'worker running');
  return async () => {
    await runner.stop();
    await services.pool.close();
    await services.database.close();
  };
});
