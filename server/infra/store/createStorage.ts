import type { Config } from '../settings/config.ts';
import type { Logger } from '../settings/log.ts';
import { FolderStorage } from './folderStorage.ts';
import type { Storage } from './storage.ts';

/** The folder store, or S3's (its SDK is loaded only then: ~10 MB a folder-store server never needs). */
export async function createStorage(config: Config, log: Logger): Promise<Storage> {
  if (!config.s3) return new FolderStorage(config.dataDir, config.uploadExpiresAfterMs);
  const { S3Storage } = await import('./s3Storage.ts');
  return new S3Storage(config.s3, config.uploadExpiresAfterMs, log);
}
