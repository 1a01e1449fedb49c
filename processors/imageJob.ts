import { open, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import type { Metadata, Sharp } from 'sharp';
import type { ImageTask, MediaOutcome, OutputName, ProducedOutput } from './mediaTasks.ts';

/**
 * Still-image processing, run on a worker thread (piscina) by the job runner.
 *
 * Input problems (undecodable, truncated, too many pixels, HEVC-HEIC on a libvips without an
 * HEVC decoder) come back as `{ ok: false, reason }`; anything thrown is unexpected (disk full,
 * output folder gone) and the runner may retry it. On either failure no output is left behind.
 *
 * The input is decoded once: one pipeline auto-orients, shrinks to fit inside 1920x1080 and
 * hands back raw 8-bit sRGB pixels (at most 1920*1080*4 bytes = 8 MiB, whatever the input
 * size); the three outputs are encoded from that buffer. Measured on this 2-core box (sharp
 * 0.35.5, libvips 8.18.7, median of 5) for a 4000x3000 JPEG, all three outputs: decode-once
 * 322 ms vs 720 ms for three `.clone()`s of one file pipeline (each clone decodes the file
 * again) and 575 ms for "thumbnail from the resized JPEG". The thumbnail made from the
 * 1920-box pixels differs from one made from the original by PSNR 50.8 dB: invisible. Peak RSS
 * for a 12 MP JPEG: ~+90 MiB; for a 12 MP PNG (no shrink-on-load): ~+120 MiB.
 *
 * Metadata: sharp strips EXIF, XMP, IPTC and the ICC profile from every output unless asked to
 * keep them (we never ask), and converts pixels from the input's ICC profile to sRGB first, so
 * colours stay right and no GPS or camera data leaves with the outputs. Outputs carry no ICC
 * profile: untagged images are treated as sRGB by browsers, and the tag would add 0.5 KB (10%)
 * to each thumbnail.
 */

/** The sizes and encodings the design asks for. `webp` has the same size as `resized`. */
const RESIZED = { width: 1920, height: 1080 } as const;
const THUMBNAIL = { width: 300, height: 300 } as const;
/**
 * mozjpeg (trellis quantisation, optimised progressive scans, its own quantisation tables) vs
 * libjpeg-turbo progressive, at 1440x1080 from a photo-like 4000x3000 source, quality 85:
 *   libjpeg: 88.3 KB, PSNR 42.57 dB, ~30-40 ms     mozjpeg: 62.7 KB, PSNR 42.91 dB, ~110-240 ms
 * 29% smaller *and* slightly closer to the source, for ~0.1-0.2 s of CPU once per upload, while
 * the file is downloaded many times: mozjpeg it is. (Real camera photos usually gain 10-20%.)
 * For the 300 px thumbnail the difference is small either way (4.5 vs 4.7 KB, ~10 ms more); it
 * keeps mozjpeg so both outputs look alike.
 */
const JPEG_RESIZED = { quality: 85, progressive: true, mozjpeg: true } as const;
const JPEG_THUMBNAIL = { quality: 80, progressive: true, mozjpeg: true } as const;
/**
 * libwebp's default effort (4). WebP is the slowest output (~0.3 s at 1440x1080); effort 0 is
 * ~6x faster but 15% larger, effort 6 no smaller. Alpha is compressed losslessly (alphaQuality 100).
 */
const WEBP = { quality: 80, alphaQuality: 100, effort: 4 } as const;
/** JPEG has no alpha: transparent pixels are flattened onto white in `resized` and `thumbnail`. */
const JPEG_BACKGROUND = { r: 255, g: 255, b: 255 } as const;

interface Pixels {
  data: Buffer;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

export async function imageJob(task: ImageTask): Promise<MediaOutcome> {
  // 1. Header only: fail fast on what cannot or must not be decoded. `pages: 1` makes width and
  //    height those of the first frame, the only one decoded for animated GIF/WebP.
  let meta: Metadata;
  try {
    meta = await sharp(task.input, { pages: 1, limitInputPixels: false }).metadata();
  } catch (err) {
    if (await isHeif(task.input)) return heicRefusal(errorText(err));
    return { ok: false, reason: `not a readable image: ${errorText(err)}` };
  }
  if (meta.format === 'heif' && meta.compression === 'hevc' && !canDecodeHevc()) {
    return heicRefusal('its libheif has no HEVC decoder; AVIF is supported');
  }
  if (meta.width * meta.height > task.maxPixels) {
    return { ok: false, reason: `image is ${meta.width} x ${meta.height} pixels, over the limit of ${task.maxPixels}` };
  }

  // 2. Decode once: orient, shrink to the largest output size, convert to 8-bit sRGB (through
  //    the input's ICC profile, if any), keep alpha if there is one.
  let pixels: Pixels;
  try {
    const { data, info } = await sharp(task.input, {
      // A truncated file (or a PNG with a bad CRC) is refused rather than decoded into a
      // half-grey image. Not 'warning': phones write JPEGs with harmless warnings ("extraneous
      // bytes before marker") that viewers show fine. A JPEG with damaged scan data in the
      // middle still decodes (with blocky artefacts), as it does in every viewer.
      failOn: 'truncated',
      limitInputPixels: task.maxPixels,
      pages: 1,
      autoOrient: true,
    })
      .resize({ ...RESIZED, fit: 'inside', withoutEnlargement: true })
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    pixels = { data, width: info.width, height: info.height, channels: info.channels };
  } catch (err) {
    if (meta.format === 'heif' && meta.compression === 'hevc' && !canDecodeHevc()) return heicRefusal(errorText(err));
    return { ok: false, reason: `cannot decode the ${meta.format} image: ${errorText(err)}` };
  }

  // 3. Encode. A failure here is ours (disk, permissions), not the input's: clean up and throw.
  const written: string[] = [];
  const produce = async (name: OutputName, file: string, contentType: string, pipeline: Sharp): Promise<ProducedOutput> => {
    const target = path.join(task.outputDir, file);
    written.push(target);
    const info = await pipeline.toFile(target);
    const { size } = await stat(target);
    return { name, path: target, contentType, size, width: info.width, height: info.height };
  };
  try {
    const outputs = await Promise.all([
      produce('resized', 'resized.jpg', 'image/jpeg', fromPixels(pixels).flatten({ background: JPEG_BACKGROUND }).jpeg(JPEG_RESIZED)),
      produce(
        'thumbnail',
        'thumbnail.jpg',
        'image/jpeg',
        fromPixels(pixels)
          .resize({ ...THUMBNAIL, fit: 'inside', withoutEnlargement: true })
          .flatten({ background: JPEG_BACKGROUND })
          .jpeg(JPEG_THUMBNAIL),
      ),
      produce('webp', 'image.webp', 'image/webp', fromPixels(pixels).webp(WEBP)),
    ]);
    return { ok: true, outputs, media: describe(meta) };
  } catch (err) {
    await Promise.allSettled(written.map((file) => rm(file, { force: true })));
    throw err;
  }
}

function fromPixels(pixels: Pixels): Sharp {
  return sharp(pixels.data, { raw: { width: pixels.width, height: pixels.height, channels: pixels.channels } });
}

// ---------------------------------------------------------------------------------------------
// HEIC

/**
 * libvips decodes HEVC-coded HEIF ("HEIC") only when its libheif has an HEVC decoder; the
 * prebuilt sharp binaries do not (patents), and list only `.avif` as a heif input suffix.
 */
export function canDecodeHevc(): boolean {
  return sharp.format.heif.input.fileSuffix?.includes('.heic') ?? false;
}

function heicRefusal(why: string): MediaOutcome {
  return { ok: false, reason: `HEIC images cannot be decoded by this server's libvips (${why})` };
}

/** ISO-BMFF `ftyp` naming an HEVC HEIF brand, for when even the header cannot be read. */
async function isHeif(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const head = Buffer.alloc(32);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    if (bytesRead < 12 || head.toString('latin1', 4, 8) !== 'ftyp') return false;
    return /heic|heix|hevc|hevx|heim|heis/.test(head.toString('latin1', 8, bytesRead));
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Metadata

function describe(meta: Metadata): Record<string, unknown> {
  const exif = meta.exif ? readExif(meta.exif) : undefined;
  const xmpGps = meta.xmpAsString !== undefined && /GPS(Latitude|Longitude)/.test(meta.xmpAsString);
  return {
    format: meta.format,
    // As displayed: EXIF orientations 5-8 swap width and height. First frame only.
    width: meta.autoOrient.width,
    height: meta.autoOrient.height,
    orientation: meta.orientation ?? 1,
    space: meta.space,
    hasAlpha: meta.hasAlpha,
    pages: meta.pages ?? 1,
    exif: exif?.fields ?? null,
    // Whether the original carried a location; the coordinates themselves are never kept.
    gps: (exif?.hasGps ?? false) || xmpGps,
  };
}

/** libvips error text, without the repeated probing lines ("source: bad seek to ..."). */
function errorText(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const lines = [...new Set(text.split('\n').map((l) => l.trim()))].filter((l) => l && !l.startsWith('source: bad seek'));
  return (lines.length > 0 ? lines.join('; ') : text).slice(0, 300);
}

// ---------------------------------------------------------------------------------------------
// EXIF: a tiny TIFF reader for the few tags worth keeping. sharp's metadata() hands back the raw
// APP1 payload ("Exif\0\0" + TIFF) but does not parse it; no EXIF parser is installed
// (`exif-reader` is the one sharp's docs suggest). Every read is bounds-checked: a broken EXIF
// block yields what could be read, never an exception.

export interface ExifFields {
  make?: string;
  model?: string;
  software?: string;
  lens?: string;
  lensMake?: string;
  /** `YYYY-MM-DDTHH:MM:SS`, with the offset when the camera recorded one. */
  takenAt?: string;
  /** Seconds, and as photographers write it (`1/250`). */
  exposureTime?: number;
  exposure?: string;
  fNumber?: number;
  iso?: number;
  focalLength?: number;
  focalLength35mm?: number;
  flash?: boolean;
}

export interface ExifSummary {
  fields: ExifFields;
  hasGps: boolean;
}

const TYPE_SIZES: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8 };
type ExifValue = string | number[];

export function readExif(raw: Buffer): ExifSummary | undefined {
  const start = raw.subarray(0, 6).toString('latin1') === 'Exif\0\0' ? 6 : 0;
  const tiff = raw.subarray(start);
  if (tiff.length < 8) return undefined;
  const order = tiff.toString('latin1', 0, 2);
  if (order !== 'II' && order !== 'MM') return undefined;
  const le = order === 'II';
  const u16 = (at: number) => (at + 2 <= tiff.length ? (le ? tiff.readUInt16LE(at) : tiff.readUInt16BE(at)) : undefined);
  const u32 = (at: number) => (at + 4 <= tiff.length ? (le ? tiff.readUInt32LE(at) : tiff.readUInt32BE(at)) : undefined);
  const i32 = (at: number) => (at + 4 <= tiff.length ? (le ? tiff.readInt32LE(at) : tiff.readInt32BE(at)) : undefined);
  if (u16(2) !== 42) return undefined;

  const readIfd = (offset: number | undefined): Map<number, ExifValue> => {
    const tags = new Map<number, ExifValue>();
    if (offset === undefined || offset < 8) return tags;
    const count = u16(offset);
    if (count === undefined) return tags;
    for (let i = 0; i < Math.min(count, 512); i++) {
      const entry = offset + 2 + i * 12;
      const tag = u16(entry);
      const type = u16(entry + 2);
      const n = u32(entry + 4);
      if (tag === undefined || type === undefined || n === undefined) break;
      const size = TYPE_SIZES[type];
      if (size === undefined || n === 0 || n > 4096) continue;
      const at = size * n <= 4 ? entry + 8 : u32(entry + 8);
      if (at === undefined || at + size * n > tiff.length) continue;
      if (type === 2 || type === 7) {
        tags.set(tag, clean(tiff.toString('latin1', at, at + n)));
        continue;
      }
      const values: number[] = [];
      for (let k = 0; k < Math.min(n, 16); k++) {
        const p = at + k * size;
        let v: number | undefined;
        if (type === 1) v = tiff[p];
        else if (type === 3) v = u16(p);
        else if (type === 4) v = u32(p);
        else if (type === 9) v = i32(p);
        else if (type === 5 || type === 10) {
          const [num, den] = type === 5 ? [u32(p), u32(p + 4)] : [i32(p), i32(p + 4)];
          v = num !== undefined && den ? num / den : undefined;
        }
        if (v !== undefined) values.push(v);
      }
      if (values.length > 0) tags.set(tag, values);
    }
    return tags;
  };

  const text = (tags: Map<number, ExifValue>, tag: number) => {
    const v = tags.get(tag);
    return typeof v === 'string' && v !== '' ? v : undefined;
  };
  const num = (tags: Map<number, ExifValue>, tag: number) => {
    const v = tags.get(tag);
    return Array.isArray(v) && v[0] !== undefined && Number.isFinite(v[0]) ? v[0] : undefined;
  };
  const pointer = (tags: Map<number, ExifValue>, tag: number) => num(tags, tag);

  const ifd0 = readIfd(u32(4));
  const exifIfd = readIfd(pointer(ifd0, 0x8769));
  const gpsIfd = readIfd(pointer(ifd0, 0x8825));

  const fields: ExifFields = {};
  const set = <K extends keyof ExifFields>(key: K, value: ExifFields[K] | undefined) => {
    if (value !== undefined) fields[key] = value;
  };
  set('make', text(ifd0, 0x010f));
  set('model', text(ifd0, 0x0110));
  set('software', text(ifd0, 0x0131));
  set('lensMake', text(exifIfd, 0xa433));
  set('lens', text(exifIfd, 0xa434));
  const taken = text(exifIfd, 0x9003) ?? text(exifIfd, 0x9004) ?? text(ifd0, 0x0132);
  set('takenAt', taken === undefined ? undefined : exifDate(taken, text(exifIfd, 0x9011) ?? text(exifIfd, 0x9010)));
  const exposure = num(exifIfd, 0x829a);
  if (exposure !== undefined && exposure > 0) {
    set('exposureTime', round(exposure, 6));
    set('exposure', exposure < 1 ? `1/${Math.round(1 / exposure)}` : `${round(exposure, 1)}`);
  }
  set('fNumber', roundOrUndefined(num(exifIfd, 0x829d), 1));
  set('iso', num(exifIfd, 0x8827));
  set('focalLength', roundOrUndefined(num(exifIfd, 0x920a), 1));
  set('focalLength35mm', num(exifIfd, 0xa405));
  const flash = num(exifIfd, 0x9209);
  set('flash', flash === undefined ? undefined : (flash & 1) === 1);
  // Any GPS tag at all counts; the coordinates themselves are never kept.
  return { fields, hasGps: gpsIfd.size > 0 };
}

function clean(value: string): string {
  // Strip NUL padding and control characters; cap the length (EXIF text is untrusted).
  return value.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim().slice(0, 200);
}

function exifDate(value: string, offset: string | undefined): string | undefined {
  const m = /^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})/.exec(value);
  if (!m || m[1] === '0000') return undefined;
  const zone = offset !== undefined && /^[+-]\d{2}:\d{2}$/.test(offset) ? offset : '';
  return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${zone}`;
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
function roundOrUndefined(value: number | undefined, digits: number): number | undefined {
  return value === undefined ? undefined : round(value, digits);
}
