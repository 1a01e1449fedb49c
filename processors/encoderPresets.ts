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
 * mozjpeg (trellis quantisation, optimised progressive scans, its own quantisation tables) rather
 * than libjpeg-turbo: at the same quality its files are smaller and no further from the source,
 * for more CPU spent once per upload, while the file is downloaded many times. The thumbnail keeps
 * mozjpeg too, so both outputs look alike. A video's poster is encoded as `resized` is.
 */
export const JPEG_RESIZED = { quality: 85, progressive: true, mozjpeg: true } as const;
export const JPEG_THUMBNAIL = { quality: 80, progressive: true, mozjpeg: true } as const;
/**
 * libwebp's default effort (4): WebP is the slowest output, a lower effort gives larger files and
 * a higher one no smaller. Alpha is compressed losslessly (alphaQuality 100).
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
 * x264 `veryfast` at CRF 23 (x264's default quality): the faster presets make much larger files,
 * the slower ones save few bytes for a lot more time. Videos are encoded once and downloaded many
 * times, but a small worker must also keep up: veryfast is the knee. The maxrate/bufsize cap
 * (capped CRF) keeps noisy or high-motion sources from ballooning and keeps the stream playable
 * over ordinary connections; typical content stays well under it.
 */
export const X264 = ['-preset', 'veryfast', '-crf', '23', '-profile:v', 'high'] as const;
/**
 * The lower HLS rungs look 5 frames ahead instead of veryfast's 10: less CPU for the same quality
 * per byte (SSIM against bytes, docs/benchmarks.md); mb-tree stays on, unlike `superfast`.
 */
export const X264_LOWER_RUNG_PARAMS = 'rc-lookahead=5';
/** The `mp4` output's cap when no HLS rung sets it (bufsize twice the rate, for every cap). */
export const MP4_MAXRATE = 8_000_000;
/** `stream` is a stream specifier (`:v:1`) when one output has several video encodes. */
export function rateCap(maxrate: number, stream = ''): string[] {
  return [`-maxrate${stream}`, String(maxrate), `-bufsize${stream}`, String(2 * maxrate)];
}
export const AAC = ['-c:a', 'aac', '-b:a', '128k'] as const;
