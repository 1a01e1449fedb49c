import { abandonFinal, assembleFinal, finalCreate, notYourPart, partialCreate } from '../../../hooks/concatenation.ts';
import type { HookContext } from '../../../hooks/hookContext.ts';
import { uploadIdPattern } from '../../../hooks/uploadStatusJson.ts';
import { closeAfterAnswer } from '../../http/lingeringClose.ts';
import { deleteParts, findOwnPart, findPart } from '../../infra/db/uploadParts.ts';
import type { Concatenated, StoredPart } from '../../infra/store/storage.ts';
import type { TusExtension } from '../tusExtension.ts';
import { callerOf, creatorOf, type TusRequest } from '../tusRequest.ts';
import { OCTET_STREAM, refuseTusRequest } from '../tusWire.ts';

/** What an Upload-Concat header asks for, or why it cannot be read. */
export function readUploadConcat(header: string): { kind: 'partial' } | { kind: 'final'; urls: string[] } | string {
  // "If the upload is a partial one, the header value MUST be `partial`."
  if (header === 'partial') return { kind: 'partial' };
  // "In the case of a final upload, its value MUST be `final` followed by a semicolon and a
  // space-separated list of partial upload URLs that will be concatenated."
  const urls = /^final;(.*)$/.exec(header)?.[1]!.split(' ').filter(Boolean);
  if (!urls) return `Upload-Concat must be "partial" or "final;<url> <url> …", not "${header}"`;
  if (urls.length === 0) return 'Upload-Concat: final names no partial upload';
  return { kind: 'final', urls };
}

/**
 * The tus concatenation extension (tus-js-client's parallelUploads), which @tus/server lacks (it
 * answers 501). Before @tus/server: Upload-Concat is checked, and @tus/server is handed a plain
 * creation (no `Upload-Concat`; a final's `Upload-Length` is its parts' sum). Then: a partial is
 * recorded as a part, a final as an upload that is assembled before its 201 is sent (so the
 * client's next request finds it complete); HEAD says what an upload is; a terminated partial
 * loses its record. `observe` is told where each final's bytes went.
 */
export function concatenation(context: HookContext, tusPath: string, observe: (result: Concatenated) => void): TusExtension {
  const { db, storage, log } = context;

  /** The caller's unused, finished partial upload `url` names, or why not (the same words for unknown, another owner's and no partial). */
  const finishedPart = async (request: TusRequest, url: string): Promise<StoredPart | string> => {
    // "The partial uploads URLs MAY be absolute or relative."
    let path: string;
    try {
      path = new URL(url, 'http://relative.invalid').pathname;
    } catch {
      return notYourPart(url).trim();
    }
    const id = path.slice(path.lastIndexOf('/') + 1);
    const named = path.endsWith(`${tusPath}/${id}`) && uploadIdPattern.test(id);
    const part = named ? await findOwnPart(db, id, callerOf(request).owner) : undefined;
    if (!part || part.final_id !== null) return notYourPart(url).trim();
    const stored = await storage.datastore.getUpload(id).catch(() => undefined);
    if (!stored) return notYourPart(url).trim();
    if (stored.offset !== part.size) return `Upload refused: the partial upload ${url} is not finished (${stored.offset} of ${part.size} bytes); create the final upload once every part is`;
    return { id, size: part.size };
  };

  return {
    name: 'concatenation',
    announces: { extension: 'concatenation' },
    before: async (ctx, request, next) => {
      const { method, headers } = request.engine;
      // "The Server MUST respond with the 403 Forbidden status to PATCH requests against a final
      // upload URL and MUST NOT modify the final or its partial uploads."
      if (method === 'PATCH' && request.upload?.upload_concat) {
        refuseTusRequest(ctx, 403, `Upload ${request.upload.id} is a final upload: its bytes are its partial uploads' and cannot be appended to`);
        return closeAfterAnswer(ctx);
      }
      const header = headers.get('Upload-Concat');
      if (method !== 'POST' || !header) return next();
      const refuse = (reason: string) => {
        refuseTusRequest(ctx, 400, reason);
        closeAfterAnswer(ctx);
      };
      const concat = readUploadConcat(header);
      if (typeof concat === 'string') return refuse(concat);
      if (concat.kind === 'partial') {
        // Its bytes count toward the quota as declared, like any upload's.
        if (headers.get('Upload-Defer-Length')) return refuse('A partial upload needs its Upload-Length; Upload-Defer-Length is not taken with Upload-Concat: partial');
        request.concat = { kind: 'partial' };
        headers.delete('Upload-Concat');
        return next();
      }
      const { urls } = concat;
      // "The Client MUST NOT include the Upload-Length header in the final upload creation."
      if (headers.get('Upload-Length') || headers.get('Upload-Defer-Length')) return refuse('A final upload takes its length from its partial uploads: send no Upload-Length');
      if ((headers.get('Content-Type') ?? '').toLowerCase().startsWith(OCTET_STREAM)) return refuse('A final upload takes no body: its bytes are its partial uploads\'');
      if (new Set(urls).size !== urls.length) return refuse('Upload-Concat names the same partial upload twice');
      const parts: StoredPart[] = [];
      for (const url of urls) {
        const part = await finishedPart(request, url);
        if (typeof part === 'string') return refuse(part);
        parts.push(part);
      }
      // "The length of the final upload MUST be the sum of the length of all partial uploads."
      headers.set('Upload-Length', String(parts.reduce((sum, part) => sum + part.size, 0)));
      headers.delete('Upload-Concat');
      request.concat = { kind: 'final', final: { uploadConcat: header, parts } };
      return next();
    },

    create: async (upload, request) => {
      const { concat } = request;
      if (concat?.kind === 'partial') return partialCreate(context, upload, creatorOf(request)).then(() => ({}));
      if (concat?.kind !== 'final') return undefined;
      const { metadata, limits } = await finalCreate(context, upload, creatorOf(request), concat.final);
      request.limits = limits;
      return { metadata };
    },

    // A partial upload's last byte: nothing happens to it until a final takes it.
    finish: async (_upload, { partial, concat }) => Boolean(partial) || concat?.kind === 'partial',

    answer: async (response, request) => {
      const { concat, engine } = request;
      if (engine.method === 'HEAD') {
        // "Response to HEAD request against partial or final upload MUST include the Upload-Concat
        // header and its value as received in the upload creation request."
        const uploadConcat = request.partial ? 'partial' : request.upload?.upload_concat;
        if (uploadConcat) response.headers.set('Upload-Concat', uploadConcat);
        return response;
      }
      if (engine.method !== 'POST' || concat?.kind !== 'final') return response;
      const id = response.headers.get('Location')?.split('/').pop();
      if (response.status === 201 && id) {
        observe(await assembleFinal(context, id, concat.final.parts));
        // Complete: it does not expire (the store saw it empty when it answered).
        response.headers.delete('Upload-Expires');
        return response;
      }
      // A refusal (a tus error) came before anything was made; a store failure after the final
      // took its parts: give them back. The parts name the final they were taken into.
      const failure = request.engineError;
      if (failure !== undefined && !(failure as { status_code?: number }).status_code) {
        const taken = await findPart(db, concat.final.parts[0]!.id);
        if (taken?.final_id) await abandonFinal(context, taken.final_id, failure);
      }
      return response;
    },

    terminated: async (id) => {
      await deleteParts(db, [id]).catch((err: unknown) => log.warn({ err, upload: id }, 'removing a terminated partial upload failed'));
    },
  };
}
