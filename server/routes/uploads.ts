import Router from '@koa/router';
import { contentDisposition, outputKey, type Storage } from '../storage.ts';
import { changeStatus, findUpload, listOutputs } from '../db/records.ts';
import type { Db } from '../db/database.ts';
import type { UploadStatus } from '../db/schema.ts';
import { httpError } from '../httpError.ts';
import { sendFile } from '../sendFile.ts';
import { uploadStatus } from './uploadStatus.ts';

/** States whose bytes are gone for good: downloads answer 410 Gone. */
const gone: UploadStatus[] = ['rejected', 'infected', 'failed', 'expired', 'deleted'];
const removable: UploadStatus[] = ['uploading', 'received', 'inspecting', 'processing', 'ready', 'rejected', 'infected', 'failed', 'expired'];

export function uploadRoutes(deps: { db: Db; storage: Storage; baseUrl: (origin: string) => string }): Router {
  const { db, storage } = deps;
  const router = new Router({ prefix: '/api/uploads' });

  router.get('/:id', async (ctx) => {
    const body = (await uploadStatus(db, ctx.params.id!, deps.baseUrl(`${ctx.protocol}://${ctx.host}`))) ?? httpError(404, `no upload ${ctx.params.id}`);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = body;
  });

  // Only a `ready` upload is ever served: never one unscanned, infected or rejected.
  router.get('/:id/files/:name', async (ctx) => {
    const upload = (await findUpload(db, ctx.params.id!)) ?? httpError(404, `no upload ${ctx.params.id}`);
    if (gone.includes(upload.status)) httpError(410, `upload is ${upload.status}: ${upload.reason ?? ''}`.trim());
    if (upload.status !== 'ready') httpError(409, `upload is ${upload.status}, not ready yet`);
    const name = ctx.params.name!;
    const output = name === 'original' ? undefined : (await listOutputs(db, upload.id)).find((o) => o.name === name);
    if (name !== 'original' && !output) httpError(404, `upload ${upload.id} has no output ${name}`);
    const key = output ? outputKey(upload.id, name) : upload.storage_key;
    const contentType = output?.content_type ?? upload.detected_type ?? 'application/octet-stream';
    const filename = output ? `${upload.safe_filename.replace(/\.[^.]*$/, '')}-${name}.${extensionFor(contentType)}` : upload.safe_filename;
    const located = await storage.locate(key, { filename, contentType });
    if (located.kind === 'redirect') {
      ctx.set('Cache-Control', 'no-store');
      ctx.redirect(located.url);
      return;
    }
    // Stored bytes never change under an id, so clients and proxies may keep them.
    sendFile(ctx, located, {
      'Content-Type': contentType,
      'Content-Disposition': contentDisposition(filename),
      'Cache-Control': 'private, max-age=31536000, immutable',
      'X-Content-Type-Options': 'nosniff',
      ETag: `"${output ? `${upload.sha256}-${name}` : upload.sha256}"`,
    });
  });

  router.delete('/:id', async (ctx) => {
    const upload = (await findUpload(db, ctx.params.id!)) ?? httpError(404, `no upload ${ctx.params.id}`);
    // The state changes first: from here nothing serves the upload, even if removal fails midway.
    await changeStatus(db, upload.id, removable, { status: 'deleted', reason: 'deleted on request' });
    await storage.removeUpload(upload.id);
    ctx.status = 204;
  });

  return router;
}

function extensionFor(contentType: string): string {
  return { 'image/jpeg': 'jpg', 'image/webp': 'webp', 'image/png': 'png', 'video/mp4': 'mp4' }[contentType] ?? 'bin';
}
