import sharp from 'sharp';
import { rgbaToThumbHash, thumbHashToApproximateAspectRatio, thumbHashToAverageRGBA } from 'thumbhash';

/** A picture's placeholder: what an app paints before the picture arrives. */
export interface Thumbhash {
  /** The ThumbHash bytes, base64. */
  hash: string;
  /** Width over height, as the hash encodes it (approximate). */
  aspectRatio: number;
  /** `#rrggbb`, the hash's own average colour. */
  averageColor: string;
}

/** ThumbHash encodes at most 100x100 pixels. */
const THUMBHASH_BOX = 100;

/**
 * The placeholder of an output already made (an image's or a poster's `thumbnail`): a small resize
 * of it, so the original is never decoded a second time. Runs on the pool's worker thread.
 */
export async function thumbhashOf(thumbnail: string): Promise<Thumbhash> {
  const { data, info } = await sharp(thumbnail)
    .resize({ width: THUMBHASH_BOX, height: THUMBHASH_BOX, fit: 'inside' })
    .ensureAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const hash = rgbaToThumbHash(info.width, info.height, data);
  const { r, g, b } = thumbHashToAverageRGBA(hash);
  const hex = (channel: number) => Math.round(channel * 255).toString(16).padStart(2, '0');
  return {
    hash: Buffer.from(hash).toString('base64'),
    aspectRatio: Math.round(thumbHashToApproximateAspectRatio(hash) * 1000) / 1000,
    averageColor: `#${hex(r)}${hex(g)}${hex(b)}`,
  };
}
