import { Server } from '@tus/server';
import { ERRORS, EVENTS, Upload, type Locker } from '@tus/utils';
import type { HookContext } from '../../hooks/hookContext.ts';
import { uploadCreate } from '../../hooks/uploadCreate.ts';
import { uploadFinish } from '../../hooks/uploadFinish.ts';
import { finalCreate, partialCreate } from '../../hooks/concatenation.ts';
import { uploadSizeLimit } from '../../hooks/typePolicy.ts';
import { tusPath } from '../../hooks/uploadStatusJson.ts';
import { tusCorsOptions } from '../http/cors.ts';
import { isDatabaseUnavailable } from '../infra/db/databaseUnavailable.ts';
import { bytesHeldByOthers, findUpload, recordDeclaredSize, recordOffset } from '../infra/db/records.ts';
import { senderOf } from './tusHandle.ts';
import { fixHeadResponses } from './tusProtocol.ts';
import { serveChecksums } from './tusChecksum.ts';
import { serveConcatenation } from './tusConcatenation.ts';
import type { Concatenated } from '../infra/store/storage.ts';

/** @tus/server over the chosen store, with our hooks and a size limit per declared type. */
export function createTusServer(context: HookContext, locker: Locker, observeConcatenation: (result: Concatenated) => void = () => {}): Server {
  const { config, db, storage, log } = context;
  const server: Server = new Server({
    path: tusPath,
    datastore: storage.datastore,
    locker,
    // Finished uploads are removed with DELETE /api/uploads/:id, which also drops their outputs.
    disableTerminationForFinishedUploads: true,
    postReceiveInterval: 1000,
    // The same CORS answers as every other route (cors.ts); @tus/server writes its own on tus responses.
    ...tusCorsOptions(config.corsOrigins),
    generateUrl: config.publicUrl ? (_req, { path, id }) => `${config.publicUrl}${path}/${id}` : undefined,
    // Before an upload exists only the global limit is known; after, the limit of its declared type
    // in the policy its creator's token narrowed.
    maxSize: async (req, id) => {
      // The row tusUploadAccess already read for this request: a PATCH reads it once, not twice.
      const known = senderOf(req).upload;
      const upload = id ? (known?.id === id ? known : await findUpload(db, id)) : undefined;
      if (!upload) return config.maxUploadSize;
      const limit = uploadSizeLimit(config, upload.limits, { filename: upload.safe_filename, type: upload.claimed_type ?? undefined });
      // A length declared at creation was checked against the bytes quota then; a deferred one
      // may grow only into what the owner's other uploads leave of it.
      if (upload.size !== null || !upload.owner || config.quotas.bytes === undefined) return limit;
      return Math.min(limit, Math.max(0, config.quotas.bytes - (await bytesHeldByOthers(db, upload.owner, upload.id))));
    },
    onUploadCreate: async (req, upload) => {
      const sender = senderOf(req);
      const creator = { owner: sender.caller.owner, limits: sender.caller.limits, ip: sender.ip };
      const { concat } = sender;
      if (concat?.kind === 'partial') return partialCreate(context, upload, creator).then(() => ({}));
      const { metadata, limits } = concat?.kind === 'final' ? await finalCreate(context, upload, creator, concat.final) : await uploadCreate(context, upload, creator);
      sender.limits = limits;
      return { metadata };
    },
    onUploadFinish: async (req, upload) => {
      // A partial upload's last byte: nothing happens to it until a final takes it.
      const { partial, concat } = senderOf(req);
      if (!partial && concat?.kind !== 'partial') await uploadFinish(context, upload);
      return {};
    },
    onResponseError: async (req, error) => {
      // A client that is told 503 (with Retry-After, see handleTus) tries again: nothing is lost.
      if (isDatabaseUnavailable(error)) {
        log.warn({ err: error }, 'tus request failed: database unavailable');
        return { status_code: 503, body: 'The database is unavailable; try again shortly\n' };
      }
      if (error === ERRORS.INVALID_TERMINATION) {
        // A refusal, not a malformed request: 403 rather than @tus/server's 400, and say what works.
        const id = server.handlers.DELETE.getFileIdFromRequest(req);
        return { status_code: 403, body: `Upload ${id} is complete and cannot be terminated; remove it with DELETE /api/uploads/${id}\n` };
      }
      if (error === ERRORS.FILE_NOT_FOUND) {
        // "If a Client does attempt to resume an upload which has since been removed by the Server,
        // the Server SHOULD respond with the 404 Not Found or 410 Gone status. The latter one SHOULD
        // be used if the Server is keeping track of expired uploads." We keep the record.
        const id = server.handlers.HEAD.getFileIdFromRequest(req);
        const upload = id ? await findUpload(db, id).catch(() => undefined) : undefined;
        if (upload && upload.status !== 'uploading') {
          return { status_code: 410, body: `Upload ${id} is ${upload.status}${upload.reason ? `: ${upload.reason}` : ''}\n` };
        }
      }
      if (!('status_code' in error)) log.error({ err: error }, 'tus request failed');
      return undefined;
    },
  });
  fixHeadResponses(server);
  serveChecksums(server);
  serveConcatenation(server, context, observeConcatenation);

  const recordProgress = (id: string, offset: number, size: number | undefined) => {
    const writes = [recordOffset(db, id, offset)];
    if (size !== undefined) writes.push(recordDeclaredSize(db, id, size));
    return Promise.all(writes).then(
      () => undefined,
      (err: unknown) => log.warn({ err, upload: id }, 'recording progress failed'),
    );
  };
  // Only the offset: a deferred length is recorded by the request that declares it (below).
  server.on(EVENTS.POST_RECEIVE, (_source: unknown, upload: Upload) => void recordProgress(upload.id, upload.offset, undefined));
  // @tus/server drops its pending (throttled) POST_RECEIVE when a request ends, so a PATCH shorter
  // than postReceiveInterval never reports progress: record where each PATCH or POST left the upload.
  for (const handler of [server.handlers.PATCH, server.handlers.POST]) {
    const send = handler.send.bind(handler);
    handler.send = async (req, ...rest) => {
      const res = await send(req, ...rest);
      const id = handler.getFileIdFromRequest(req) ?? res.headers.get('Location')?.split('/').pop();
      const offset = res.headers.get('Upload-Offset');
      const length = req.headers.get('Upload-Length');
      if (id && offset !== null) await recordProgress(id, Number(offset), length === null ? undefined : Number(length));
      return res;
    };
  }
  // A PATCH that stored the last bytes while the database was away could not record the finish
  // (onUploadFinish failed, the client was told 503); its client's HEAD then finds the upload
  // complete and stops there. Recording the finish on that HEAD loses nothing (it is a no-op for
  // an upload already past `uploading`), and a database still away makes the HEAD a 503 again.
  const head = server.handlers.HEAD;
  const sendHead = head.send.bind(head);
  head.send = async (req, ...rest) => {
    const res = await sendHead(req, ...rest);
    const id = head.getFileIdFromRequest(req);
    const offset = res.headers.get('Upload-Offset');
    if (id && offset !== null && offset === res.headers.get('Upload-Length')) {
      await uploadFinish(context, new Upload({ id, offset: Number(offset), size: Number(offset) }));
    }
    return res;
  };
  // Emitted once the store holds the new upload, before its body is read.
  server.on(EVENTS.POST_CREATE, (req: Request, _upload: Upload, url: string) => {
    const sender = senderOf(req);
    sender.onCreated?.(url, sender);
  });
  server.on(EVENTS.POST_TERMINATE, (_req: unknown, _res: unknown, id: string) => {
    context.lifecycle
      .move(db, id, 'deleted', { from: ['uploading'], reason: 'terminated by the client' })
      .then((deleted) => deleted.ok || log.info({ upload: id, status: deleted.current?.status }, 'terminated upload had moved on; its state is kept'))
      .catch((err: unknown) => log.warn({ err, upload: id }, 'recording termination failed'));
  });
  return server;
}
