import Router from '@koa/router';
import type { ParameterizedContext } from 'koa';
import type { UploadLifecycle } from '../../../hooks/uploadLifecycle.ts';
import { eventsLinkName, folderLinkName, openFolderGrant, uploadIdPattern, uploadStatusJson, type StatusLinks } from '../../../hooks/uploadStatusJson.ts';
import type { CallerState } from '../../auth/authenticate.ts';
import { createLinkSigners, statusLinkSigning, type LinkCheck } from '../../auth/signedLinks.ts';
import { entryFiles, outputFileType } from '../../../processors/outputFiles.ts';
import type { Config } from '../../infra/settings/config.ts';
import { contentDisposition, outputKey, type Storage } from '../../infra/store/storage.ts';
import { deleteOutputs, findOwnUpload, findUpload, listOutputs, listOwnUploads } from '../../infra/db/records.ts';
import type { Db } from '../../infra/db/database.ts';
import { uploadStatuses, type Upload, type UploadStatus } from '../../infra/db/schema.ts';
import { uploadStatusFacts } from '../../infra/db/uploadStatusFacts.ts';
import { httpError } from '../httpError.ts';
import type { Logger } from '../../infra/settings/log.ts';
import type { UploadEventHub } from '../uploadEventHub.ts';
import { streamUploadEvents } from '../uploadEventStream.ts';
import { sendFile } from '../sendFile.ts';

/** An event stream tells progress at most this often (uploads record it about once a second). */
const progressIntervalMs = 1000;

/** What a downloaded file may do in a browser: nothing (no scripts, no plugins, no sniffing). */
const downloadHeaders = { 'X-Content-Type-Options': 'nosniff', 'Content-Security-Policy': "default-src 'none'; sandbox" };

/**
 * The status, listing, download and delete API. Every route sees only the caller's own uploads:
 * another owner's upload answers exactly as an unknown id does. With tokens, the download URLs in
 * the status JSON are signed links, which are their own credential (so `<img src>` works).
 */
export function uploadRoutes(deps: { config: Config; db: Db; storage: Storage; lifecycle: UploadLifecycle; hub: UploadEventHub; baseUrl: (origin: string) => string; log: Logger }): Router<CallerState> {
  const { config, db, storage, lifecycle, hub } = deps;
  const router = new Router<CallerState>({ prefix: '/api/uploads' });
  const signers = createLinkSigners(config);
  const signer = signers?.downloads;
  const notFound = (id: string | undefined): never => httpError(404, `no upload ${id}`);
  const links = (ctx: { protocol: string; host: string }): StatusLinks => ({ base: deps.baseUrl(`${ctx.protocol}://${ctx.host}`), ...statusLinkSigning(signers) });
  const statusOf = (upload: Upload, ctx: { protocol: string; host: string }) => uploadStatusJson(db, upload, links(ctx));

  /**
   * The upload a request may see: with a signed link (`name` is what the link was signed for),
   * whoever holds the link; else only the caller's own.
   */
  const visibleUpload = async (ctx: ParameterizedContext<CallerState>, id: string, name: string): Promise<Upload | undefined> => {
    if (!signer || ctx.query.sig === undefined) return findOwnUpload(db, id, ctx.state.caller.owner);
    return signedUpload(id, signer.check(id, name, ctx.query.expires, ctx.query.sig));
  };
  const signedUpload = (id: string, check: LinkCheck): Promise<Upload | undefined> => {
    if (check === 'tampered') httpError(403, 'this link is not valid: its signature does not match');
    if (check === 'expired') httpError(403, 'this link has expired; get a fresh one from the status API');
    return findUpload(db, id);
  };
  /** Only a `ready` upload is ever served: never one unscanned, infected or rejected. */
  const mustBeReady = (upload: Upload): void => {
    if (upload.status === 'ready') return;
    // Terminal and not ready: it will never be served (410 Gone); otherwise it may be, later.
    if (uploadStatusFacts[upload.status].terminal) httpError(410, `upload is ${upload.status}: ${upload.reason ?? ''}`.trim());
    httpError(409, `upload is ${upload.status}, not ready yet`);
  };

  // An id not in the server's own format names no upload: the same 404, before any query.
  router.param('id', (id, _ctx, next) => (uploadIdPattern.test(id) ? next() : notFound(id)));

  router.get('/', async (ctx) => {
    const limit = ctx.query.limit === undefined ? 20 : Number(ctx.query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) httpError(400, 'limit must be a whole number from 1 to 100');
    const status = ctx.query.status;
    if (status !== undefined && !uploadStatuses.includes(status as UploadStatus)) httpError(400, `status must be one of ${uploadStatuses.join(', ')}`);
    const cursor = ctx.query.cursor;
    if (cursor !== undefined && typeof cursor !== 'string') httpError(400, 'give one cursor');
    const after = cursor === undefined ? undefined : Buffer.from(cursor, 'base64url').toString();
    // One more than the page: whether it exists says whether there is a next page.
    const rows = await listOwnUploads(db, ctx.state.caller.owner, { limit: limit + 1, after, status: status as UploadStatus | undefined });
    const page = rows.slice(0, limit);
    const items = await Promise.all(page.map((upload) => statusOf(upload, ctx)));
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { items, nextCursor: rows.length > limit ? Buffer.from(page.at(-1)!.id).toString('base64url') : null };
  });

  router.get('/:id', async (ctx) => {
    const upload = (await findOwnUpload(db, ctx.params.id!, ctx.state.caller.owner)) ?? notFound(ctx.params.id);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await statusOf(upload, ctx);
  });

  // Server-Sent Events: the status now, then each transition and progress (uploadEventStream.ts).
  router.get('/:id/events', async (ctx) => {
    const id = ctx.params.id!;
    const upload = (await visibleUpload(ctx, id, eventsLinkName)) ?? notFound(id);
    // EventSource sends Last-Event-ID when it reconnects; a page opening a new one passes ?lastEventId=.
    const resumeFrom = ctx.get('Last-Event-ID') || (typeof ctx.query.lastEventId === 'string' ? ctx.query.lastEventId : '');
    if (resumeFrom !== '' && !/^\d{1,9}$/.test(resumeFrom)) httpError(400, 'Last-Event-ID must be an event id this stream sent (a whole number)');
    const lastEventId = resumeFrom === '' ? undefined : Number(resumeFrom);
    // "A client can be told to stop reconnecting using the HTTP 204 No Content response code":
    // a stream that ended after a terminal state is not opened again by EventSource's reconnect.
    if (lastEventId !== undefined && uploadStatusFacts[upload.status].terminal && upload.event_seq <= lastEventId) {
      ctx.status = 204;
      return;
    }
    // HEAD (which the router answers with this GET route) says what a GET would be, without holding a stream open.
    if (ctx.method === 'HEAD') {
      ctx.type = 'text/event-stream; charset=utf-8';
      ctx.set('Cache-Control', 'no-store');
      ctx.status = 200;
      return;
    }
    ctx.respond = false;
    await streamUploadEvents(ctx.res, {
      db,
      hub,
      uploadId: id,
      lastEventId,
      statusJson: (now) => statusOf(now, ctx),
      heartbeatMs: config.eventsHeartbeatMs,
      progressIntervalMs,
      log: deps.log,
    });
  });

  router.get('/:id/files/:name', async (ctx) => {
    const { id, name } = ctx.params as { id: string; name: string };
    // The events link is signed for a name no download has: it opens only its stream.
    const upload = (name === eventsLinkName ? undefined : await visibleUpload(ctx, id, name)) ?? notFound(id);
    mustBeReady(upload);
    const output = name === 'original' ? undefined : (await listOutputs(db, upload.id)).find((o) => o.name === name);
    if (name !== 'original' && !output) httpError(404, `upload ${upload.id} has no output ${name}`);
    // A multi-file output has no one file to download: its link (in the status JSON) opens its entry file.
    if (entryFiles[name] !== undefined) httpError(404, `${name} is a folder of files: open the link the status API gives for it`);
    const key = output ? outputKey(upload.id, name) : upload.storage_key;
    // The type the bytes were found to be (or the one the server made), never the client's claim.
    const contentType = output?.content_type ?? upload.detected_type ?? 'application/octet-stream';
    const filename = output ? `${upload.safe_filename.replace(/\.[^.]*$/, '')}-${name}.${extensionFor(contentType)}` : upload.safe_filename;
    // Outputs are the images and videos made to be shown; the original is whatever was uploaded.
    const disposition = output ? 'inline' : 'attachment';
    const located = await storage.locate(key, { filename, contentType, disposition });
    if (located.kind === 'redirect') {
      ctx.set('Cache-Control', 'no-store');
      ctx.redirect(located.url);
      return;
    }
    // Stored bytes never change under an id, so clients and proxies may keep them.
    sendFile(ctx, located, {
      ...downloadHeaders,
      'Content-Type': contentType,
      'Content-Disposition': contentDisposition(filename, disposition),
      'Cache-Control': 'private, max-age=31536000, immutable',
      ETag: `"${output ? `${upload.sha256}-${name}` : upload.sha256}"`,
    });
  });

  /**
   * The files of a multi-file output (`hls`, `storyboard`). A player resolves each file a
   * playlist names against the playlist's own URL and drops its query, so the signature is a path
   * segment (`grant`) that covers the output's folder, with its own lifetime (HLS_LINK_TTL).
   * Playlists and WebVTT are answered here (a redirect would move the base the player resolves
   * against); segments and sprites are streamed from the folder store with Range, or redirected
   * to S3. Any page may play them: the link is the credential, so CORS allows every origin.
   */
  router.get('/:id/outputs/:output/:grant/:file', async (ctx) => {
    const { id, output: name, grant, file } = ctx.params as { id: string; output: string; grant: string; file: string };
    ctx.set('Access-Control-Allow-Origin', '*');
    const contentType = outputFileType(file);
    if (entryFiles[name] === undefined || contentType === undefined) notFound(id);
    const upload =
      (signers
        ? await signedUpload(id, signers.folders.checkPathSegment(id, folderLinkName(name), grant))
        : grant === openFolderGrant ? await findOwnUpload(db, id, ctx.state.caller.owner) : undefined) ?? notFound(id);
    mustBeReady(upload);
    if (!(await listOutputs(db, upload.id)).some((o) => o.name === name)) httpError(404, `upload ${upload.id} has no output ${name}`);
    const key = `${outputKey(upload.id, name)}/${file}`;
    const headers = { ...downloadHeaders, 'Content-Type': contentType!, 'Cache-Control': 'private, max-age=31536000, immutable', ETag: `"${upload.sha256}-${name}-${file}"` };
    try {
      if (/\.(m3u8|vtt)$/.test(file)) {
        ctx.set(headers);
        ctx.body = await storage.readOutput(key);
        return;
      }
      const located = await storage.locate(key, { filename: file, contentType: contentType!, disposition: 'inline' });
      if (located.kind === 'redirect') {
        ctx.set('Cache-Control', 'no-store');
        ctx.redirect(located.url);
        return;
      }
      sendFile(ctx, located, headers);
    } catch (error) {
      if (missingFile(error)) httpError(404, `output ${name} of upload ${upload.id} has no file ${file}`);
      throw error;
    }
  });

  router.delete('/:id', async (ctx) => {
    const upload = (await findOwnUpload(db, ctx.params.id!, ctx.state.caller.owner)) ?? notFound(ctx.params.id);
    // The state changes first: from here nothing serves the upload, even if removal fails midway.
    const deleted = await lifecycle.move(db, upload.id, 'deleted', { reason: 'deleted on request', with: (trx) => deleteOutputs(trx, upload.id) });
    // Refused: it was deleted already (a repeated DELETE), and answers as the first did.
    if (!deleted.ok && deleted.current?.status !== 'deleted') return notFound(upload.id);
    await storage.removeUpload(upload.id);
    ctx.status = 204;
  });

  return router;
}

function extensionFor(contentType: string): string {
  return { 'image/jpeg': 'jpg', 'image/webp': 'webp', 'image/png': 'png', 'video/mp4': 'mp4' }[contentType] ?? 'bin';
}

/** A file the store does not hold: the folder store's ENOENT, S3's NoSuchKey. */
function missingFile(error: unknown): boolean {
  const { code, name } = error as { code?: string; name?: string };
  return code === 'ENOENT' || name === 'NoSuchKey';
}
