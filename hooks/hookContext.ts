import type { Config } from '../server/infra/settings/config.ts';
import type { Db } from '../server/infra/db/database.ts';
import type { Logger } from '../server/infra/settings/log.ts';
import type { Storage } from '../server/infra/store/storage.ts';
import type { UploadLifecycle } from './uploadLifecycle.ts';

/** What every hook and job handler is given by the server that runs it. */
export interface HookContext {
  db: Db;
  config: Config;
  storage: Storage;
  log: Logger;
  /** The only writer of upload states. */
  lifecycle: UploadLifecycle;
}
