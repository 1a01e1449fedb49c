import type { Upload } from '@tus/utils';
import { receiveUpload } from '../server/db/records.ts';
import type { HookContext } from './hookContext.ts';

/** The last byte is stored: mark the upload `received` and queue its inspection, atomically. */
export async function uploadFinish(context: HookContext, upload: Upload): Promise<void> {
  const size = upload.size ?? upload.offset;
  const received = await receiveUpload(context.db, upload.id, size, context.config.jobMaxAttempts);
  context.log.info({ upload: upload.id, size, received }, 'upload finished');
}
