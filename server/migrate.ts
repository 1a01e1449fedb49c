import { ConfigError, loadConfig } from './config.ts';
import { migrateToLatest, openDatabase } from './db/database.ts';
import { createLogger } from './log.ts';

/** `npm run migrate`: bring the database schema up to date and exit (the server also does this at start). */
try {
  const config = loadConfig();
  const log = createLogger(config.logLevel);
  const database = await openDatabase(config);
  await migrateToLatest(database.db, log);
  await database.close();
  log.info({ database: database.describe }, 'schema up to date');
} catch (error) {
  console.error(error instanceof ConfigError ? error.message : error);
  process.exit(1);
}
