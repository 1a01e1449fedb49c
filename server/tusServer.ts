import { MemoryLocker, Server } from '@tus/server';
import { EVENTS, type Locker, type Upload } from '@tus/utils';
import type { HookContext } from '../hooks/hookContext.ts';
import { uploadCreate } from '../hooks/uploadCreate.ts';
import { uploadFinish } from '../hooks/uploadFinish.ts';
import { limitFor } from '../hooks/typePolicy.ts';
import { changeStatus, findUpload, recordDeclaredSize, recordOffset } from './db/records.ts';

export const tusPath = '/files';

/** @tus/server over the chosen store, with our hooks and a size limit per declared type. */
export function createTusServer(context: HookContext, locker: Locker | undefined): Server {
  const { config, db, storage, log } = context;
  const server = new Server({
    path: tusPath,
    datastore: storage.datastore,
    locker: locker ?? new MemoryLocker(),
    // Finished uploads are removed with DELETE /api/uploads/:id, which also drops their outputs.
    disableTerminationForFinishedUploads: true,
    postReceiveInterval: 1000,
    generateUrl: config.publicUrl ? (_req, { path, id }) => `${config.publicUrl}${path}/${id}` : undefined,
    // Before an upload exists only the global limit is known; after, the limit of its declared type.
    maxSize: async (_req, id) => {
      const upload = id ? await findUpload(db, id) : undefined;
      if (!upload) return config.maxUploadSize;
      return limitFor(config.typePolicy, { filename: upload.safe_filename, type: upload.claimed_type ?? undefined }, config.maxUploadSize);
    },
    onUploadCreate: (_req, upload) => uploadCreate(context, upload),
    onUploadFinish: async (_req, upload) => {
      await uploadFinish(context, upload);
      return {};
    },
    onResponseError: (_req, error) => {
      if (!('status_code' in error)) log.error({ err: error }, 'tus request failed');
      return undefined;
    },
  });
  server.on(EVENTS.POST_RECEIVE, (_source: unknown, upload: Upload) => {
    const writes = [recordOffset(db, upload.id, upload.offset)];
    if (upload.size !== undefined) writes.push(recordDeclaredSize(db, upload.id, upload.size));
    Promise.all(writes).catch((err: unknown) => log.warn({ err, upload: upload.id }, 'recording progress failed'));
  });
  server.on(EVENTS.POST_TERMINATE, (_req: unknown, _res: unknown, id: string) => {
    changeStatus(db, id, ['uploading'], { status: 'deleted', reason: 'terminated by the client' }).catch((err: unknown) =>
      log.warn({ err, upload: id }, 'recording termination failed'),
    );
  });
  return server;
}

