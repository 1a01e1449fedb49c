import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import exifReader from 'exif-reader';
import sharp from 'sharp';
import type { Metadata, Sharp } from 'sharp';
import { JobControl, Stopped } from './childProcesses.ts';
import { JPEG_BACKGROUND, JPEG_RESIZED, JPEG_THUMBNAIL, pictureBox, THUMBNAIL_BOX, WEBP } from './encoderPresets.ts';
import { heifConvert } from './heifConvert.ts';
import type { ImageTask, MediaOutcome, OutputName, ProducedOutput } from './mediaTasks.ts';

/**
 * Still-image processing, run on a worker thread (piscina) by the job runner.
 *
 * Input problems (undecodable, truncated, too many pixels, HEVC-HEIC on a libvips without an
 * HEVC decoder) come back as `{ ok: false, reason }`; anything thrown is unexpected (disk full,
 * output folder gone) and the runner may retry it. On either failure no output is left behind.
 *
 * The input is decoded once: one pipeline auto-orients, shrinks to fit inside 1920x1080 and
 * hands back raw 8-bit sRGB pixels (at most one picture box of them, whatever the input size);
 * the three outputs are encoded from that buffer. Why: `.clone()`s of one file pipeline decode
 * the file again for each output, and a thumbnail made from the resized JPEG pays a JPEG decode
 * and a second loss; a thumbnail from the box-sized pixels cannot be told from one made from the
 * original.
 *
 * Metadata: sharp strips EXIF, XMP, IPTC and the ICC profile from every output unless asked to
 * keep them (we never ask), and converts pixels from the input's ICC profile to sRGB first, so
 * colours stay right and no GPS or camera data leaves with the outputs. Outputs carry no ICC
 * profile: untagged images are treated as sRGB by browsers, and the tag would add 0.5 KB (10%)
 * to each thumbnail.
 */

interface Pixels {
  data: Buffer;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

export async function imageJob(task: ImageTask): Promise<MediaOutcome> {
  // 1. Header only: fail fast on what cannot or must not be decoded. `pages: 1` makes width and
  //    height those of the first frame, the only one decoded for animated GIF/WebP. libvips reads
  //    an HEIC's header (size after `irot`, EXIF) even when it cannot decode its pixels.
  let meta: Metadata;
  try {
    meta = await sharp(task.input, { pages: 1, limitInputPixels: false }).metadata();
  } catch (err) {
    return { ok: false, reason: `not a readable image: ${errorText(err)}` };
  }
  if (meta.width * meta.height > task.maxPixels) {
    return { ok: false, reason: `image is ${meta.width} x ${meta.height} pixels, over the limit of ${task.maxPixels}` };
  }

  const control = new JobControl(task.timeoutMs, task.port);
  const heifDir = path.join(task.outputDir, 'heif-convert');
  const written: string[] = [];
  try {
    // 2. HEVC-coded HEIF goes through heif-convert first (see heifConvert.ts). Its file is upright
    //    already and keeps the EXIF Orientation tag: it is read without turning it again.
    let source = { file: task.input, autoOrient: true };
    if (meta.format === 'heif' && meta.compression === 'hevc' && !canDecodeHevc()) {
      const decoded = await heifConvert(control.children, task.input, heifDir, meta.hasAlpha);
      control.check();
      if (!decoded.ok) return { ok: false, reason: `cannot decode the HEIC image: ${decoded.reason}` };
      source = { file: decoded.file, autoOrient: false };
    }

    // 3. Decode once: orient, shrink to the picture box (turned with the picture), convert to
    //    8-bit sRGB (through the input's ICC profile, if any), keep alpha if there is one.
    let pixels: Pixels;
    try {
      const { data, info } = await sharp(source.file, {
        // A truncated file (or a PNG with a bad CRC) is refused rather than decoded into a
        // half-grey image. Not 'warning': phones write JPEGs with harmless warnings ("extraneous
        // bytes before marker") that viewers show fine. A JPEG with damaged scan data in the
        // middle still decodes (with blocky artefacts), as it does in every viewer.
        failOn: 'truncated',
        limitInputPixels: task.maxPixels,
        pages: 1,
        autoOrient: source.autoOrient,
      })
        .resize({ ...pictureBox(meta.autoOrient), fit: 'inside', withoutEnlargement: true })
        .toColourspace('srgb')
        .raw({ depth: 'uchar' })
        .toBuffer({ resolveWithObject: true });
      pixels = { data, width: info.width, height: info.height, channels: info.channels };
    } catch (err) {
      return { ok: false, reason: `cannot decode the ${meta.format} image: ${errorText(err)}` };
    }
    await rm(heifDir, { recursive: true, force: true });
    control.check();

    // 4. Encode. A failure here is ours (disk, permissions), not the input's: clean up and throw.
    const produce = async (name: OutputName, file: string, contentType: string, pipeline: Sharp): Promise<ProducedOutput> => {
      const target = path.join(task.outputDir, file);
      written.push(target);
      const info = await pipeline.toFile(target);
      const { size } = await stat(target);
      return { name, path: target, contentType, size, width: info.width, height: info.height };
    };
    // All settled before any is judged: a failed one must not leave the others still writing.
    const settled = await Promise.allSettled([
      produce('resized', 'resized.jpg', 'image/jpeg', fromPixels(pixels).flatten({ background: JPEG_BACKGROUND }).jpeg(JPEG_RESIZED)),
      produce(
        'thumbnail',
        'thumbnail.jpg',
        'image/jpeg',
        fromPixels(pixels)
          .resize({ ...THUMBNAIL_BOX, fit: 'inside', withoutEnlargement: true })
          .flatten({ background: JPEG_BACKGROUND })
          .jpeg(JPEG_THUMBNAIL),
      ),
      produce('webp', 'image.webp', 'image/webp', fromPixels(pixels).webp(WEBP)),
    ]);
    const failure = settled.find((r) => r.status === 'rejected');
    if (failure) throw failure.reason;
    const outputs = settled.map((r) => (r as PromiseFulfilledResult<ProducedOutput>).value);
    control.check();
    written.length = 0; // kept: they are the outcome
    return { ok: true, outputs, media: describe(meta) };
  } catch (err) {
    if (err instanceof Stopped) return { ok: false, reason: control.reason() };
    throw err;
  } finally {
    await control.release();
    await Promise.allSettled([rm(heifDir, { recursive: true, force: true }), ...written.map((file) => rm(file, { force: true }))]);
  }
}

function fromPixels(pixels: Pixels): Sharp {
  return sharp(pixels.data, { raw: { width: pixels.width, height: pixels.height, channels: pixels.channels } });
}

/**
 * libvips decodes HEVC-coded HEIF ("HEIC") itself only when its libheif has an HEVC decoder; the
 * prebuilt sharp binaries do not (patents), and list only `.avif` as a heif input suffix.
 */
export function canDecodeHevc(): boolean {
  return sharp.format.heif.input.fileSuffix?.includes('.heic') ?? false;
}

// ---------------------------------------------------------------------------------------------
// Metadata

function describe(meta: Metadata): Record<string, unknown> {
  const exif = meta.exif ? readExif(meta.exif) : undefined;
  const xmpGps = meta.xmpAsString !== undefined && /GPS(Latitude|Longitude)/.test(meta.xmpAsString);
  return {
    format: meta.format,
    // heif holds HEVC (HEIC) or AV1 (AVIF).
    ...(meta.format === 'heif' ? { compression: meta.compression } : {}),
    // As displayed: EXIF orientations 5-8 swap width and height; HEIF's `irot` is applied. First frame only.
    width: meta.autoOrient.width,
    height: meta.autoOrient.height,
    // libvips drops the tag from HEIF (whose `irot` it applies); the EXIF block still says it.
    orientation: meta.orientation ?? exif?.orientation ?? 1,
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
// EXIF: the few tags worth keeping, from the raw APP1 payload ("Exif\0\0" + TIFF) sharp's
// metadata() hands back, parsed by exif-reader. EXIF is untrusted: a block exif-reader refuses
// yields nothing, and only well-typed values are kept.

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
  orientation?: number;
}

export function readExif(raw: Buffer): ExifSummary | undefined {
  let tags: exifReader.Exif;
  try {
    tags = exifReader(raw);
  } catch {
    return undefined;
  }
  const image: Record<string, unknown> = tags.Image ?? {};
  const photo: Record<string, unknown> = tags.Photo ?? {};
  const fields: ExifFields = {};
  const set = <K extends keyof ExifFields>(key: K, value: ExifFields[K] | undefined) => {
    if (value !== undefined) fields[key] = value;
  };
  set('make', text(image.Make));
  set('model', text(image.Model));
  set('software', text(image.Software));
  set('lensMake', text(photo.LensMake));
  set('lens', text(photo.LensModel));
  const taken = [photo.DateTimeOriginal, photo.DateTimeDigitized, image.DateTime].find((d) => d instanceof Date && !Number.isNaN(d.getTime()));
  // exif-reader reads the camera's wall-clock time as if it were UTC: its ISO text is that time.
  const offset = text(photo.OffsetTimeOriginal) ?? text(photo.OffsetTime);
  if (taken instanceof Date) set('takenAt', taken.toISOString().slice(0, 19) + (offset && /^[+-]\d{2}:\d{2}$/.test(offset) ? offset : ''));
  const exposure = number(photo.ExposureTime);
  if (exposure !== undefined && exposure > 0) {
    set('exposureTime', round(exposure, 6));
    set('exposure', exposure < 1 ? `1/${Math.round(1 / exposure)}` : `${round(exposure, 1)}`);
  }
  set('fNumber', roundOrUndefined(number(photo.FNumber), 1));
  set('iso', number(photo.ISOSpeedRatings));
  set('focalLength', roundOrUndefined(number(photo.FocalLength), 1));
  set('focalLength35mm', number(photo.FocalLengthIn35mmFilm));
  const flash = number(photo.Flash);
  set('flash', flash === undefined ? undefined : (flash & 1) === 1);
  const orientation = number(image.Orientation);
  return {
    fields,
    // Any GPS tag at all counts; the coordinates themselves are never kept.
    hasGps: Object.keys(tags.GPSInfo ?? {}).length > 0,
    ...(orientation !== undefined && orientation >= 1 && orientation <= 8 ? { orientation } : {}),
  };
}

/** Text tags: strip NUL padding and control characters, cap the length. */
function text(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const cleaned = value.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim().slice(0, 200);
  return cleaned === '' ? undefined : cleaned;
}

/** A number tag, or the first of several (ISO speed may be a list). */
function number(value: unknown): number | undefined {
  const first = Array.isArray(value) ? (value as unknown[])[0] : value;
  return typeof first === 'number' && Number.isFinite(first) ? first : undefined;
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
function roundOrUndefined(value: number | undefined, digits: number): number | undefined {
  return value === undefined ? undefined : round(value, digits);
}
