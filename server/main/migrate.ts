import { migrateToLatest, openDatabase } from '../infra/db/database.ts';
import { runProcess } from './runProcess.ts';

/** `npm run migrate`: bring the database schema up to date and exit (the server also does this at start). */
await runProcess('migration', async (config, log) => {
  const database = await openDatabase(config, log);
  await migrateToLatest(database.db, log);
  await database.close();
  log.info({ database: database.describe }, 'schema up to date');
  process.exit(0);
});
