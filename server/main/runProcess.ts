import { ConfigError, loadConfig, type Config } from '../infra/settings/config.ts';
import { createLogger, type Logger } from '../infra/settings/log.ts';

/**
 * The life of a server or worker process: settings checked first (a bad one stops the start
 * with its message), then `start`; SIGTERM or SIGINT run the returned `stop` and exit 0.
 */
export async function runProcess(
  name: string,
  start: (config: Config, log: Logger) => Promise<() => Promise<void>>,
): Promise<void> {
  try {
    const config = loadConfig();
    const log = createLogger(config.logLevel);
    // Node's own warnings (and libraries', such as the AWS SDK's Node version notice) as JSON lines:
    // `npm start` runs node with --no-warnings, which stops only their plain-text copy on stderr.
    process.on('warning', (warning) => log.warn({ warning: warning.name }, warning.message.replace(/\s+/g, ' ').trim()));
    const started = start(config, log);
    // Listening before `start` returns: a signal from then on must stop the process cleanly, not kill it.
    const onSignal = async (signal: string) => {
      log.info({ signal }, `stopping the ${name}: finishing running requests and jobs`);
      const stop = await started;
      await stop();
      process.exit(0);
    };
    process.once('SIGTERM', (s) => void onSignal(s).catch(() => process.exit(1)));
    process.once('SIGINT', (s) => void onSignal(s).catch(() => process.exit(1)));
    await started;
  } catch (error) {
    console.error(error instanceof ConfigError ? error.message : error);
    process.exit(1);
  }
}
