import type { HookContext } from '../../hooks/hookContext.ts';
import { ConfigError, loadConfig } from '../infra/settings/config.ts';
import { openDatabase } from '../infra/db/database.ts';
import { createLogger } from '../infra/settings/log.ts';
import { createLifecycle } from './start.ts';
import { createStorage } from '../infra/store/createStorage.ts';

/** A mistake in a command's arguments: said on stderr with its usage, exit 2. */
export class UsageError extends Error {}

/** Prints one JSON line of a command's answer on stdout. */
export const printLine = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);

/**
 * The life of a one-off maintenance command (`npm run cleanup`, `npm run requeue`): arguments
 * parsed (before anything is opened) and settings checked, then the database and the store of
 * the servers opened for `run`, whose result is the exit code. Logs go to stderr, so stdout holds
 * only the command's answer. Exit 2 for bad arguments or settings, 1 when something went wrong.
 */
export async function runCommand<Args>(
  name: string,
  usage: string,
  parse: (args: string[]) => Args,
  run: (context: HookContext, args: Args) => Promise<number>,
): Promise<never> {
  let code: number;
  try {
    const args = parse(process.argv.slice(2));
    const config = loadConfig();
    const log = createLogger(config.logLevel, 'stderr').child({ command: name });
    const database = await openDatabase(config, log);
    try {
      code = await run({ db: database.db, config, storage: await createStorage(config, log), log, lifecycle: createLifecycle(config) }, args);
    } finally {
      await database.close();
    }
  } catch (error) {
    if (error instanceof UsageError) process.stderr.write(`${name}: ${error.message}\n\n${usage}\n`);
    else process.stderr.write(`${name}: ${error instanceof ConfigError ? error.message : (error as Error).stack ?? String(error)}\n`);
    code = error instanceof UsageError || error instanceof ConfigError ? 2 : 1;
  }
  // Pools and sockets of the SDKs would keep the process alive after the answer.
  process.exit(code);
}
