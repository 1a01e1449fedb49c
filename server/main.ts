import { ConfigError, loadConfig } from './config.ts';
import { createLogger } from './log.ts';
import { startServer } from './start.ts';

/** `npm start`: the server, with the job runner in the same process unless RUN_JOBS=false. */
try {
  const config = loadConfig();
  const log = createLogger(config.logLevel);
  const server = await startServer(config, log);
  const stop = async (signal: string) => {
    log.info({ signal }, 'stopping: finishing requests and running jobs');
    await server.close();
    process.exit(0);
  };
  process.once('SIGTERM', (s) => void stop(s));
  process.once('SIGINT', (s) => void stop(s));
} catch (error) {
  console.error(error instanceof ConfigError ? error.message : error);
  process.exit(1);
}
