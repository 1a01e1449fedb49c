import type { HookContext } from '../../../hooks/hookContext.ts';
import { abandonCreation, uploadCreate } from '../../../hooks/uploadCreate.ts';
import { uploadFinish } from '../../../hooks/uploadFinish.ts';
import type { TusExtension } from '../tusExtension.ts';
import { creatorOf } from '../tusRequest.ts';

/**
 * The upload domain behind tus creation, finish and termination: an upload is recorded (judged by
 * the type policy, the quotas and the app's check) before the store makes it; its last byte makes
 * it `received` with its inspection queued; a client's termination makes it `deleted`.
 */
export function creation(context: HookContext): TusExtension {
  const { db, lifecycle, log } = context;
  return {
    name: 'creation',
    create: async (upload, request) => {
      const { metadata, limits } = await uploadCreate(context, upload, creatorOf(request));
      request.limits = limits;
      return { metadata };
    },
    finish: async (upload) => {
      await uploadFinish(context, upload);
      return true;
    },
    // A PATCH that stored the last bytes while the database was away could not record the finish
    // (the client was told 503); its client's HEAD then finds the upload complete and stops there.
    // Recording the finish on that HEAD loses nothing (a no-op for an upload already past
    // `uploading`), and a database still away makes the HEAD a 503 again.
    answer: async (response, request) => {
      // Recorded, but the creation failed after (the store refused): no Location reached the client.
      if (request.createdId && !response.ok) await abandonCreation(context, request.createdId, `answered ${response.status}`);
      const offset = response.headers.get('Upload-Offset');
      if (request.engine.method !== 'HEAD' || !request.upload || offset === null || offset !== response.headers.get('Upload-Length')) return response;
      await uploadFinish(context, { id: request.upload.id, offset: Number(offset), size: Number(offset) });
      return response;
    },
    terminated: async (id) => {
      const deleted = await lifecycle.move(db, id, 'deleted', { from: ['uploading'], reason: 'terminated by the client' }).catch((err: unknown) => {
        log.warn({ err, upload: id }, 'recording termination failed');
        return undefined;
      });
      if (deleted && !deleted.ok) log.info({ upload: id, status: deleted.current?.status }, 'terminated upload had moved on; its state is kept');
    },
  };
}
