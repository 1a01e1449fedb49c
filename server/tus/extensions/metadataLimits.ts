import { maxMetadataBytes, maxMetadataKeys } from '../../../hooks/uploadMetadata.ts';
import type { TusExtension } from '../tusExtension.ts';
import { refuseTusRequest } from '../tusWire.ts';

/**
 * Bounds `Upload-Metadata` on creation, where it is stored with the upload. ("The Upload-Metadata
 * request and response header MUST consist of one or more comma-separated key-value pairs" — so
 * the pairs are counted by their commas.)
 */
export function metadataLimits(): TusExtension {
  return {
    name: 'metadata limits',
    before: async (ctx, { engine }, next) => {
      const metadata = engine.method === 'POST' ? (engine.headers.get('Upload-Metadata') ?? '') : '';
      const bytes = Buffer.byteLength(metadata);
      if (bytes > maxMetadataBytes) return refuseTusRequest(ctx, 400, `Upload-Metadata is ${bytes} bytes; at most ${maxMetadataBytes} are accepted`);
      const keys = metadata ? metadata.split(',').length : 0;
      if (keys > maxMetadataKeys) return refuseTusRequest(ctx, 400, `Upload-Metadata has ${keys} keys; at most ${maxMetadataKeys} are accepted`);
      await next();
    },
  };
}
