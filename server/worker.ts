import { ConfigError, loadConfig } from './config.ts';
import { createLogger } from './log.ts';
import { createJobRunner, openServices } from './start.ts';

/** `npm run worker`: only the job runner, against the same Postgres and store as the servers. */
try {
  const config = loadConfig();
  if (!config.databaseUrl) {
    throw new ConfigError(['DATABASE_URL: a worker process needs a Postgres server shared with the servers (the embedded database lives inside `npm start`)']);
  }
  const log = createLogger(config.logLevel);
  const services = await openServices(config, log);
  const runner = createJobRunner(services);
  await runner.start();
  log.info({ worker: runner.workerId, store: services.context.storage.describe, scanner: services.scanner?.describe() ?? 'off' }, 'worker running');
  const stop = async (signal: string) => {
    log.info({ signal }, 'stopping: finishing running jobs');
    await runner.stop();
    await services.pool.close();
    await services.database.close();
    process.exit(0);
  };
  process.once('SIGTERM', (s) => void stop(s));
  process.once('SIGINT', (s) => void stop(s));
} catch (error) {
  console.error(error instanceof ConfigError ? error.message : error);
  process.exit(1);
}
