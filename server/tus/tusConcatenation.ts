import type { Middleware, ParameterizedContext } from 'koa';
import { EVENTS, type Server } from '@tus/server';
import { abandonFinal, assembleFinal, notYourPart, type FinalUpload } from '../../hooks/concatenation.ts';
import type { HookContext } from '../../hooks/hookContext.ts';
import { uploadIdPattern, type UploadState } from './tusUploadAccess.ts';
import { deleteParts, findOwnPart, findPart } from '../infra/db/uploadParts.ts';
import { closeAfterAnswer } from '../http/lingeringClose.ts';
import type { Concatenated, StoredPart } from '../infra/store/storage.ts';
import { senderOf } from './tusHandle.ts';
import { announceExtension, OCTET_STREAM, refuseTusRequest, setRequestHeader } from './tusProtocol.ts';

/** What a creation request is in the concatenation extension, once tusConcatenation checked it. */
export type ConcatCreation = { kind: 'partial' } | { kind: 'final'; final: FinalUpload };

/**
 * The tus concatenation extension (tus-js-client's parallelUploads), before @tus/server, which
 * has none (it answers 501): checks Upload-Concat, then hands @tus/server a plain creation
 * (`Upload-Concat` removed; a final's `Upload-Length` set to its parts' sum) that
 * createTusServer's hooks treat as a partial or a final (hooks/concatenation.ts).
 */
export function tusConcatenation({ db, storage }: HookContext, tusPath: string): Middleware<UploadState> {
  return async (ctx, next) => {
    // "The Server MUST respond with the 403 Forbidden status to PATCH requests against a final
    // upload URL and MUST NOT modify the final or its partial uploads."
    if (ctx.method === 'PATCH' && ctx.state.upload?.upload_concat) {
      refuseTusRequest(ctx, 403, `Upload ${ctx.state.upload.id} is a final upload: its bytes are its partial uploads' and cannot be appended to`);
      return closeAfterAnswer(ctx);
    }
    const header = ctx.get('Upload-Concat');
    if (ctx.method !== 'POST' || !header) return next();
    const refuse = (reason: string) => {
      refuseTusRequest(ctx, 400, reason);
      closeAfterAnswer(ctx);
    };
    // "If the upload is a partial one, the header value MUST be `partial`."
    if (header === 'partial') {
      // Its bytes count toward the quota as declared, like any upload's.
      if (ctx.get('Upload-Defer-Length')) return refuse('A partial upload needs its Upload-Length; Upload-Defer-Length is not taken with Upload-Concat: partial');
      ctx.state.concat = { kind: 'partial' };
      setRequestHeader(ctx.req, 'upload-concat', undefined);
      return next();
    }
    // "In the case of a final upload, its value MUST be `final` followed by a semicolon and a
    // space-separated list of partial upload URLs that will be concatenated."
    const urls = /^final;(.*)$/.exec(header)?.[1]!.split(' ').filter(Boolean);
    if (!urls) return refuse(`Upload-Concat must be "partial" or "final;<url> <url> …", not "${header}"`);
    if (urls.length === 0) return refuse('Upload-Concat: final names no partial upload');
    // "The Client MUST NOT include the Upload-Length header in the final upload creation."
    if (ctx.get('Upload-Length') || ctx.get('Upload-Defer-Length')) return refuse('A final upload takes its length from its partial uploads: send no Upload-Length');
    if (ctx.get('Content-Type').toLowerCase().startsWith(OCTET_STREAM)) return refuse('A final upload takes no body: its bytes are its partial uploads\'');
    if (new Set(urls).size !== urls.length) return refuse('Upload-Concat names the same partial upload twice');
    const parts: StoredPart[] = [];
    for (const url of urls) {
      const part = await finishedPart(ctx, url);
      if (typeof part === 'string') return refuse(part);
      parts.push(part);
    }
    // "The length of the final upload MUST be the sum of the length of all partial uploads."
    setRequestHeader(ctx.req, 'upload-length', String(parts.reduce((sum, part) => sum + part.size, 0)));
    setRequestHeader(ctx.req, 'upload-concat', undefined);
    ctx.state.concat = { kind: 'final', final: { uploadConcat: header, parts } };
    return next();
  };

  /** The caller's unused, finished partial upload `url` names, or why not (the same words for unknown, another owner's and no partial). */
  async function finishedPart(ctx: ParameterizedContext<UploadState>, url: string): Promise<StoredPart | string> {
    // "The partial uploads URLs MAY be absolute or relative."
    let path: string;
    try {
      path = new URL(url, 'http://relative.invalid').pathname;
    } catch {
      return notYourPart(url).trim();
    }
    const id = path.slice(path.lastIndexOf('/') + 1);
    const named = path.endsWith(`${tusPath}/${id}`) && uploadIdPattern.test(id);
    const part = named ? await findOwnPart(db, id, ctx.state.caller.owner) : undefined;
    if (!part || part.final_id !== null) return notYourPart(url).trim();
    const stored = await storage.datastore.getUpload(id).catch(() => undefined);
    if (!stored) return notYourPart(url).trim();
    if (stored.offset !== part.size) return `Upload refused: the partial upload ${url} is not finished (${stored.offset} of ${part.size} bytes); create the final upload once every part is`;
    return { id, size: part.size };
  }
}

/**
 * The rest of the extension inside @tus/server: the final is assembled before its 201 is sent
 * (so the client's next request finds it complete); HEAD says what an upload is; a terminated
 * partial loses its record. `observe` is told where each final's bytes went.
 */
export function serveConcatenation(server: Server, context: HookContext, observe: (result: Concatenated) => void): void {
  announceExtension(server, 'concatenation');
  const post = server.handlers.POST;
  const sendPost = post.send.bind(post);
  post.send = async (req, ...rest) => {
    const concat = senderOf(req).concat;
    const res = await sendPost(req, ...rest).catch(async (error: unknown) => {
      // A refusal (a tus error) came before anything was made; a store failure after the final
      // took its parts: give them back. The parts name the final they were taken into.
      const taken = concat?.kind === 'final' && !(error as { status_code?: number }).status_code ? await findPart(context.db, concat.final.parts[0]!.id) : undefined;
      if (taken?.final_id) await abandonFinal(context, taken.final_id, error);
      throw error;
    });
    const id = res.headers.get('Location')?.split('/').pop();
    if (concat?.kind !== 'final' || res.status !== 201 || !id) return res;
    observe(await assembleFinal(context, id, concat.final.parts));
    // Complete: it does not expire (the store saw it empty when it answered).
    res.headers.delete('Upload-Expires');
    return res;
  };
  const head = server.handlers.HEAD;
  const sendHead = head.send.bind(head);
  head.send = async (req, ...rest) => {
    const res = await sendHead(req, ...rest);
    // "Response to HEAD request against partial or final upload MUST include the Upload-Concat
    // header and its value as received in the upload creation request."
    const { upload, partial } = senderOf(req);
    const uploadConcat = partial ? 'partial' : upload?.upload_concat;
    if (uploadConcat) res.headers.set('Upload-Concat', uploadConcat);
    return res;
  };
  server.on(EVENTS.POST_TERMINATE, (_req: unknown, _res: unknown, id: string) => {
    deleteParts(context.db, [id]).catch((err: unknown) => context.log.warn({ err, upload: id }, 'removing a terminated partial upload failed'));
  });
}
