import type { HookContext } from '../../../hooks/hookContext.ts';
import { recordDeclaredSize, recordOffset } from '../../infra/db/records.ts';
import type { TusExtension } from '../tusExtension.ts';
import { headerInteger } from '../tusWire.ts';

/**
 * Records how far each upload got, for the status JSON and the event stream: while bytes arrive,
 * and where each PATCH or POST left the upload (@tus/server drops its pending, throttled
 * POST_RECEIVE when a request ends, so a PATCH shorter than its interval would report nothing).
 * A deferred length is recorded by the request that declares it.
 */
export function progress({ db, log }: HookContext): TusExtension {
  const record = async (id: string, offset: number, size: number | undefined) => {
    try {
      await Promise.all([recordOffset(db, id, offset), ...(size === undefined ? [] : [recordDeclaredSize(db, id, size)])]);
    } catch (err) {
      log.warn({ err, upload: id }, 'recording progress failed');
    }
  };
  return {
    name: 'progress',
    received: (upload) => void record(upload.id, upload.offset, undefined),
    answer: async (response, { engine, id }) => {
      if (engine.method !== 'PATCH' && engine.method !== 'POST') return response;
      const uploadId = id ?? response.headers.get('Location')?.split('/').pop();
      const offset = headerInteger(response.headers.get('Upload-Offset'));
      if (uploadId && offset !== undefined) await record(uploadId, offset, headerInteger(engine.headers.get('Upload-Length')));
      return response;
    },
  };
}
