import type { Config } from '../settings/config.ts';
import type { Logger } from '../settings/log.ts';
import { FolderStorage } from './folderStorage.ts';
import type { Storage } from './storage.ts';
import { noStoreRequest, type StoreRequestOf } from './storeRequest.ts';

/**
 * The store the settings name: the folder, or S3 (its SDK is loaded only then: ~10 MB a
 * folder-store server never needs). `requestOf` tells a store that reads it which tus request a call serves.
 */
export async function createStorage(config: Config, log: Logger, requestOf: StoreRequestOf = noStoreRequest): Promise<Storage> {
  if (!config.s3) return new FolderStorage(config.dataDir, config.uploadExpiresAfterMs);
  const { S3Storage } = await import('./s3Storage.ts');
  return new S3Storage(config.s3, config.uploadExpiresAfterMs, log, requestOf);
}
