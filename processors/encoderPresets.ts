/**
 * The sizes and encoder settings of every media output, in one place: the image and video
 * processors use them, and so does the media bench (`test/bench/media.ts`), so what it measures
 * is what runs.
 */

export interface Size {
  width: number;
  height: number;
}

/**
 * The picture box turns with the picture: landscape (and square) pictures fit 1920x1080, portrait
 * ones 1080x1920. `width` and `height` are as displayed (after rotation). Small pictures are not
 * enlarged (each caller says so to its scaler).
 */
export function pictureBox({ width, height }: Size): Size {
  return height > width ? { width: 1080, height: 1920 } : { width: 1920, height: 1080 };
}

/** The `thumbnail` output (images, and from a video's poster) fits inside this. */
export const THUMBNAIL_BOX: Size = { width: 300, height: 300 };

/**
 * mozjpeg (trellis quantisation, optimised progressive scans, its own quantisation tables) vs
 * libjpeg-turbo progressive, at 1440x1080 from a photo-like 4000x3000 source, quality 85:
 *   libjpeg: 88.3 KB, PSNR 42.57 dB, ~30-40 ms     mozjpeg: 62.7 KB, PSNR 42.91 dB, ~110-240 ms
 * 29% smaller *and* slightly closer to the source, for ~0.1-0.2 s of CPU once per upload, while
 * the file is downloaded many times: mozjpeg it is. (Real camera photos usually gain 10-20%.)
 * For the 300 px thumbnail the difference is small either way (4.5 vs 4.7 KB, ~10 ms more); it
 * keeps mozjpeg so both outputs look alike. A video's poster is encoded as `resized` is.
 */
export const JPEG_RESIZED = { quality: 85, progressive: true, mozjpeg: true } as const;
export const JPEG_THUMBNAIL = { quality: 80, progressive: true, mozjpeg: true } as const;
/**
 * libwebp's default effort (4). WebP is the slowest output (~0.3 s at 1440x1080); effort 0 is
 * ~6x faster but 15% larger, effort 6 no smaller. Alpha is compressed losslessly (alphaQuality 100).
 */
export const WEBP = { quality: 80, alphaQuality: 100, effort: 4 } as const;
/** JPEG has no alpha: transparent pixels are flattened onto white in `resized` and `thumbnail`. */
export const JPEG_BACKGROUND = { r: 255, g: 255, b: 255 } as const;

/**
 * HEVC-coded HEIF goes through heif-convert to a JPEG this good before sharp makes the outputs:
 * the three outputs are re-encoded from it at 85 and below, so its own loss does not show.
 */
export const HEIF_INTERMEDIATE_JPEG_QUALITY = 95;

/**
 * x264 `veryfast` at CRF 23 (x264's default quality): on this 2-core box a 10 s 720p clip takes
 * ~10 s with veryfast vs ~6 s with superfast, but superfast's file was twice as big (9.6 vs
 * 4.7 MB); medium costs ~2x veryfast's time for ~10-15% fewer bytes. Videos are encoded once and
 * downloaded many times, but a 2-core worker must also keep up: veryfast is the knee. The
 * maxrate/bufsize cap (capped CRF) keeps noisy or high-motion sources from ballooning and keeps
 * the stream playable over ordinary connections; typical content stays well under it.
 */
export const X264 = ['-preset', 'veryfast', '-crf', '23', '-maxrate', '8M', '-bufsize', '16M', '-profile:v', 'high'] as const;
export const AAC = ['-c:a', 'aac', '-b:a', '128k'] as const;
