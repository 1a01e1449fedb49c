import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { pngChunk } from './samples.ts';

/**
 * Image files for the image-processing tests, generated at run time with sharp (nothing binary
 * is committed). Each generator writes one file into `dir` and returns its path.
 */

/** Camera tags written into the JPEG samples; GPS goes into IFD3, the EXIF sub-IFD is IFD2. */
export const cameraExif = {
  IFD0: { Make: 'Canon', Model: 'Canon EOS 5D Mark IV', Software: 'sample-generator', DateTime: '2024:05:01 12:34:56' },
  IFD2: {
    DateTimeOriginal: '2024:05:01 12:34:56',
    OffsetTimeOriginal: '+02:00',
    ExposureTime: '1/250',
    FNumber: '28/10',
    ISOSpeedRatings: '400',
    FocalLength: '50/1',
    LensMake: 'Canon',
    LensModel: 'EF50mm f/1.8 STM',
  },
  IFD3: {
    GPSLatitudeRef: 'N',
    GPSLatitude: '48/1 51/1 2400/100',
    GPSLongitudeRef: 'E',
    GPSLongitude: '2/1 21/1 0/1',
  },
};

export async function makeSampleDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'image-samples-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Photo-like RGB pixels: smooth gradients, some texture and mild noise (pure noise or flat
 * colour would make encoder comparisons meaningless).
 */
export function photoPixels(width: number, height: number, seed = 1): Buffer {
  const data = Buffer.alloc(width * height * 3);
  let state = seed >>> 0 || 1;
  const noise = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return ((state >>> 0) % 17) - 8;
  };
  for (let y = 0; y < height; y++) {
    const v = y / height;
    const phase = Math.sin(y / 41) * 3;
    const amplitude = 30 * Math.cos(y / 31);
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      const u = x / width;
      const texture = amplitude * Math.sin(x / 23 + phase);
      data[i] = clamp(60 + 150 * u + texture + noise());
      data[i + 1] = clamp(90 + 100 * v - texture / 2 + noise());
      data[i + 2] = clamp(180 - 120 * u * v + texture / 3 + noise());
    }
  }
  return data;
}
const clamp = (n: number) => (n <= 0 ? 0 : n >= 255 ? 255 : Math.round(n));

/** A JPEG as a camera writes it: landscape pixels, EXIF orientation 6 (display rotated 90° CW), GPS and camera tags. */
export async function cameraJpeg(dir: string, width = 4000, height = 3000, name = `camera-${width}x${height}.jpg`): Promise<string> {
  const file = path.join(dir, name);
  await sharp(photoPixels(width, height), { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 90 })
    .withMetadata({ orientation: 6 })
    .withExif(cameraExif)
    .toFile(file);
  return file;
}

/** RGBA PNG: an opaque disc on a fully transparent background, with a soft half-transparent edge. */
export async function alphaPng(dir: string, width = 800, height = 600): Promise<string> {
  const file = path.join(dir, 'alpha.png');
  const data = Buffer.alloc(width * height * 4);
  const r = Math.min(width, height) / 3;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const d = Math.hypot(x - width / 2, y - height / 2);
      const i = (y * width + x) * 4;
      data[i] = 220;
      data[i + 1] = clamp((255 * x) / width);
      data[i + 2] = 40;
      data[i + 3] = clamp(255 * Math.min(1, Math.max(0, (r - d) / 20 + 0.5)));
    }
  }
  await sharp(data, { raw: { width, height, channels: 4 } }).png().toFile(file);
  return file;
}

/** Palette (indexed) PNG with a transparent colour (tRNS), as made by pngquant-style tools. */
export async function palettePng(dir: string, width = 640, height = 480): Promise<string> {
  const file = path.join(dir, 'palette.png');
  const data = Buffer.alloc(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      const band = Math.floor((x / width) * 8);
      data[i] = band * 32;
      data[i + 1] = 255 - band * 32;
      data[i + 2] = Math.floor((y / height) * 4) * 64;
      data[i + 3] = y < height / 4 ? 0 : 255;
    }
  }
  await sharp(data, { raw: { width, height, channels: 4 } }).png({ palette: true, colours: 64 }).toFile(file);
  return file;
}

async function frames(width: number, height: number, colours: string[]): Promise<Buffer[]> {
  return Promise.all(
    colours.map((background, n) =>
      sharp({ create: { width, height, channels: 3, background } })
        .composite([{ input: { create: { width: 20, height: 20, channels: 3, background: '#ffffff' } }, left: 10 + n * 25, top: 10 }])
        .png()
        .toBuffer(),
    ),
  );
}

/** Animated GIF, three 240x160 frames. */
export async function animatedGif(dir: string): Promise<string> {
  const file = path.join(dir, 'animated.gif');
  await sharp(await frames(240, 160, ['#c03030', '#30c030', '#3030c0']), { join: { animated: true } })
    .gif({ delay: 200, loop: 0 })
    .toFile(file);
  return file;
}

/** Animated WebP, three 240x160 frames. */
export async function animatedWebp(dir: string): Promise<string> {
  const file = path.join(dir, 'animated.webp');
  await sharp(await frames(240, 160, ['#c0c030', '#30c0c0', '#c030c0']), { join: { animated: true } })
    .webp({ delay: 200, loop: 0 })
    .toFile(file);
  return file;
}

/** CMYK JPEG (as print workflows export), one flat colour. */
export async function cmykJpeg(dir: string): Promise<string> {
  const file = path.join(dir, 'cmyk.jpg');
  await sharp({ create: { width: 320, height: 240, channels: 3, background: { r: 0, g: 128, b: 255 } } })
    .toColourspace('cmyk')
    .jpeg({ quality: 95 })
    .toFile(file);
  return file;
}

/** 16-bit RGBA PNG, half-transparent. */
export async function deepPng(dir: string): Promise<string> {
  const file = path.join(dir, 'deep.png');
  await sharp({ create: { width: 320, height: 240, channels: 4, background: { r: 0, g: 128, b: 255, alpha: 0.5 } } })
    .toColourspace('rgb16')
    .png()
    .toFile(file);
  return file;
}

/**
 * Pure sRGB red stored as Display P3 (what an iPhone or a P3 screen grab holds): the pixel
 * values are about (234, 51, 35) and only the embedded profile says they mean sRGB red.
 */
export async function displayP3Jpeg(dir: string): Promise<string> {
  const file = path.join(dir, 'display-p3.jpg');
  await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 255, g: 0, b: 0 } } })
    .withIccProfile('p3')
    .jpeg({ quality: 100 })
    .toFile(file);
  return file;
}

/** A JPEG cut in half, as an interrupted copy leaves it (the EOI marker and half the scan are gone). */
export async function truncatedJpeg(dir: string): Promise<string> {
  const whole = await cameraJpeg(dir, 1200, 900, 'whole-for-truncation.jpg');
  const bytes = await readFile(whole);
  const file = path.join(dir, 'truncated.jpg');
  await writeFile(file, bytes.subarray(0, Math.floor(bytes.length / 2)));
  return file;
}

/** JPEG magic bytes followed by garbage. */
export async function corruptJpeg(dir: string): Promise<string> {
  const file = path.join(dir, 'corrupt.jpg');
  const garbage = Buffer.alloc(4096);
  for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 7919 + 13) % 251;
  await writeFile(file, Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), garbage]));
  return file;
}

/**
 * Decompression bomb: a valid, tiny (~50 KiB) PNG of `side` x `side` pixels of one colour
 * (1-bit greyscale, so building it needs only side*side/8 bytes of memory here).
 */
export async function pixelBombPng(dir: string, side = 20000): Promise<string> {
  const file = path.join(dir, 'bomb.png');
  const header = Buffer.alloc(13);
  header.writeUInt32BE(side, 0);
  header.writeUInt32BE(side, 4);
  header.set([1, 0, 0, 0, 0], 8); // bit depth 1, greyscale, deflate, adaptive filter, no interlace
  const rowBytes = 1 + Math.ceil(side / 8);
  const rows = Buffer.alloc(rowBytes * side); // filter 0, all pixels black
  await writeFile(
    file,
    Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      pngChunk('IHDR', header),
      pngChunk('IDAT', deflateSync(rows, { level: 9 })),
      pngChunk('IEND', Buffer.alloc(0)),
    ]),
  );
  return file;
}

/** AVIF (AV1 in HEIF, what Android cameras can write), landscape photo pixels, encoded by sharp. */
export async function avifPhoto(dir: string, width = 2400, height = 1600): Promise<string> {
  const file = path.join(dir, 'photo.avif');
  await sharp(photoPixels(width, height, 3), { raw: { width, height, channels: 3 } })
    .avif({ quality: 50, effort: 0 })
    .toFile(file);
  return file;
}
