import { describe, expect, it } from 'vitest';
import { defaultTypePolicy } from '../server/infra/settings/config.ts';
import { narrowPolicy, refuseDeclared, refuseDetected } from '../hooks/typePolicy.ts';

/** HEIC and HEIF are one family; AVIF is allowed on its own. */
describe('type policy: the HEIC/HEIF family', () => {
  const upload = (filename: string, claimedType: string | null) => ({ filename, claimedType, size: 2_000_000 });

  it.each([
    ['image/heif', 'IMG_0001.HEIC', { mime: 'image/heic', ext: 'heic' }], // Uppy in Chromium, file-type on an iPhone photo
    ['image/heic', 'IMG_0001.heic', { mime: 'image/heif', ext: 'heic' }], // brand mif1
    ['image/heif-sequence', 'burst.heif', { mime: 'image/heic-sequence', ext: 'heic' }],
    ['image/heic', 'photo.hif', { mime: 'image/heic', ext: 'heic' }],
    ['image/avif', 'PXL_0001.avif', { mime: 'image/avif', ext: 'avif' }],
  ])('claimed %s as %s, detected %j: accepted, before and after the bytes', (claimed, filename, detected) => {
    expect(refuseDeclared(defaultTypePolicy, { filename, type: claimed, size: 2_000_000 })).toBeUndefined();
    expect(refuseDetected(defaultTypePolicy, upload(filename, claimed), detected)).toBeUndefined();
  });

  it('a policy or a token naming image/heif admits what file-type calls image/heic', () => {
    const heifOnly = [{ mime: 'image/heif', extensions: ['heic', 'heif'], maxSize: 1e8 }];
    expect(refuseDetected(heifOnly, upload('IMG_0001.HEIC', 'image/heif'), { mime: 'image/heic', ext: 'heic' })).toBeUndefined();
    const narrowed = narrowPolicy(defaultTypePolicy, { types: ['image/heif'] });
    expect(narrowed.map((t) => t.mime)).toEqual(['image/heic']);
  });

  it('the family is no wildcard: a JPEG claimed as HEIF, or a HEIC named .jpg, is still refused', () => {
    expect(refuseDetected(defaultTypePolicy, upload('IMG_0001.heic', 'image/heif'), { mime: 'image/jpeg', ext: 'jpg' })).toBe(
      'content is image/jpeg but the upload claimed image/heif',
    );
    expect(refuseDetected(defaultTypePolicy, upload('IMG_0001.jpg', null), { mime: 'image/heic', ext: 'heic' })).toBe(
      'content is image/heic but the filename ends in .jpg',
    );
  });
});
