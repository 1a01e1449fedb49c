import type { Upload } from '@tus/utils';
import { receiveUpload } from '../server/db/records.ts';
import type { HookContext } from './hookContext.ts';

/**
 * The last byte is stored: mark the upload `received` and queue its inspection, atomically. A
 * repeated finish (a HEAD of a complete upload, the cleanup) changes nothing and is not logged.
 */
export async function uploadFinish(context: HookContext, upload: Upload): Promise<void> {
  const size = upload.size ?? upload.offset;
  const received = await receiveUpload(context.db, upload.id, size, context.config.jobMaxAttempts);
  if (received) context.log.info({ upload: upload.id, size }, 'upload finished');
}
