import { enqueueJob } from '../server/infra/db/jobQueue.ts';
import type { HookContext } from './hookContext.ts';
import { uploadStatusFacts } from '../server/infra/db/uploadStatusFacts.ts';
import type { Transition } from './uploadLifecycle.ts';
import type { StoredUpload } from './uploadMetadata.ts';

/**
 * The last byte is stored: the upload becomes `received` with its inspection queued, atomically.
 * A repeated finish (a HEAD of a complete upload, the cleanup) is refused: it changes nothing
 * and is not logged.
 */
export async function uploadFinish(context: HookContext, upload: StoredUpload): Promise<Transition> {
  const size = upload.size ?? upload.offset;
  const received = await context.lifecycle.move(context.db, upload.id, 'received', {
    from: ['uploading'],
    facts: { size, offset: size },
    with: (trx) => enqueueJob(trx, upload.id, 'inspect', context.config.jobMaxAttempts),
  });
  if (received.ok) context.log.info({ upload: upload.id, size }, 'upload finished');
  // Its last bytes arrived after it was rejected, expired or deleted: they are not kept either.
  else if (received.current && !uploadStatusFacts[received.current.status].keepsBytes) await context.storage.removeUpload(upload.id);
  return received;
}
