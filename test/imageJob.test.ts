import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import sharp from 'sharp';
import type { Metadata } from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { imageJob, readExif } from '../processors/imageJob.ts';
import { createMediaPool } from '../processors/mediaPool.ts';
import type { ImageTask, MediaOutcome, OutputName, ProducedOutput } from '../processors/mediaTasks.ts';
import { brokenHeic, displayP3Heic, iphoneHeic } from './support/heicSamples.ts';
import { liveProcessesWith, zombieChildren } from './support/childProcesses.ts';
import { eventually } from './support/eventually.ts';
import * as samples from './support/imageSamples.ts';

const MAX_PIXELS = 50_000_000;
const TIMEOUT_MS = 120_000;

let dir = '';
let cleanup: () => Promise<void> = async () => {};
const files: Record<string, string> = {};

beforeAll(async () => {
  ({ dir, cleanup } = await samples.makeSampleDir());
  files.camera = await samples.cameraJpeg(dir);
  files.smallCamera = await samples.cameraJpeg(dir, 400, 300);
  files.alpha = await samples.alphaPng(dir);
  files.palette = await samples.palettePng(dir);
  files.gif = await samples.animatedGif(dir);
  files.animatedWebp = await samples.animatedWebp(dir);
  files.cmyk = await samples.cmykJpeg(dir);
  files.deep = await samples.deepPng(dir);
  files.p3 = await samples.displayP3Jpeg(dir);
  files.truncated = await samples.truncatedJpeg(dir);
  files.corrupt = await samples.corruptJpeg(dir);
  files.bomb = await samples.pixelBombPng(dir);
  files.avif = await samples.avifPhoto(dir);
  files.brokenHeic = await brokenHeic(dir);
  // As an iPhone's 12 MP main camera writes it: 4032x3024 stored in 48 tiles, irot + Orientation 6.
  files.iphone = await iphoneHeic(dir, samples.photoPixels(4032, 3024));
  files.iphoneP3 = await displayP3Heic(dir);
  files.iphoneLandscape = await iphoneHeic(dir, samples.photoPixels(1600, 1200), { width: 1600, height: 1200, orientation: 1 });
});
afterAll(() => cleanup());

function sample(name: string): string {
  const file = files[name];
  if (!file) throw new Error(`no sample ${name}`);
  return file;
}

let runs = 0;
async function run(input: string, maxPixels = MAX_PIXELS): Promise<{ outcome: MediaOutcome; outputDir: string }> {
  const outputDir = path.join(dir, `out-${++runs}`);
  await mkdir(outputDir);
  const task: ImageTask = { kind: 'image', input, outputDir, timeoutMs: TIMEOUT_MS, maxPixels };
  return { outcome: await imageJob(task), outputDir };
}

type Success = Extract<MediaOutcome, { ok: true }>;
function ok(outcome: MediaOutcome): Success {
  if (!outcome.ok) throw new Error(`expected ok, got: ${outcome.reason}`);
  return outcome;
}
function refused(outcome: MediaOutcome): string {
  if (outcome.ok) throw new Error(`expected ok:false, got outputs ${outcome.outputs.map((o) => o.name).join(', ')}`);
  return outcome.reason;
}
function output(outcome: Success, name: OutputName): ProducedOutput {
  const found = outcome.outputs.find((o) => o.name === name);
  if (!found) throw new Error(`no ${name} output`);
  return found;
}

/** Reads an output back and checks it is what the outcome says, with no metadata carried over. */
async function readBack(out: ProducedOutput): Promise<Metadata> {
  const bytes = await readFile(out.path);
  const meta = await sharp(bytes).metadata();
  expect(meta.format).toBe(out.contentType === 'image/webp' ? 'webp' : 'jpeg');
  expect({ width: meta.width, height: meta.height, size: bytes.length }).toEqual({
    width: out.width,
    height: out.height,
    size: out.size,
  });
  expect(meta.exif).toBeUndefined();
  expect(meta.xmp).toBeUndefined();
  expect(meta.iptc).toBeUndefined();
  expect(meta.orientation).toBeUndefined();
  // Pixels were converted to sRGB; no profile is attached.
  expect(meta.hasProfile).toBe(false);
  // Belt and braces: no trace of the camera tags or an EXIF block anywhere in the file.
  expect(bytes.includes('Exif\0\0')).toBe(false);
  expect(bytes.includes('Canon')).toBe(false);
  expect(bytes.includes('EF50mm')).toBe(false);
  expect(bytes.includes('iPhone')).toBe(false);
  return meta;
}

async function checkAll(outcome: Success): Promise<void> {
  expect(outcome.outputs.map((o) => o.name).sort()).toEqual(['resized', 'thumbnail', 'webp']);
  for (const out of outcome.outputs) await readBack(out);
  const thumb = output(outcome, 'thumbnail');
  expect(thumb.width).toBeLessThanOrEqual(300);
  expect(thumb.height).toBeLessThanOrEqual(300);
  expect(output(outcome, 'resized').contentType).toBe('image/jpeg');
  expect(thumb.contentType).toBe('image/jpeg');
  expect(output(outcome, 'webp').contentType).toBe('image/webp');
}

async function pixel(file: string, left: number, top: number): Promise<number[]> {
  const data = await sharp(file).extract({ left, top, width: 1, height: 1 }).raw().toBuffer();
  return [...data];
}

/** Mean of the red channel over a 40-row strip (sharp's stats() ignores extract, so do it by hand). */
async function meanRed(file: string, top: number): Promise<number> {
  const { width } = await sharp(file).metadata();
  const { data, info } = await sharp(file).extract({ left: 0, top, width, height: 40 }).raw().toBuffer({ resolveWithObject: true });
  let sum = 0;
  for (let i = 0; i < data.length; i += info.channels) sum += data[i]!;
  return sum / (data.length / info.channels);
}

const sha256 = async (file: string) => createHash('sha256').update(await readFile(file)).digest('hex');

describe('imageJob', () => {
  test('4000x3000 camera JPEG, orientation 6: portrait outputs, camera EXIF in media, nothing in outputs', async () => {
    const before = await sha256(sample('camera'));
    const outcome = ok((await run(sample('camera'))).outcome);
    await checkAll(outcome);

    // Displayed 3000x4000, portrait: the box turns to 1080x1920 -> scale 1080/3000 -> 1080x1440.
    expect(output(outcome, 'resized')).toMatchObject({ width: 1080, height: 1440 });
    expect(output(outcome, 'webp')).toMatchObject({ width: 1080, height: 1440 });
    // 300/4000 -> 225x300.
    expect(output(outcome, 'thumbnail')).toMatchObject({ width: 225, height: 300 });

    // Orientation 6 is "rotate 90° clockwise to display": the source's left edge (dark red)
    // ends up at the top, its right edge (bright red) at the bottom.
    const resized = output(outcome, 'resized').path;
    const top = await meanRed(resized, 0);
    const bottom = await meanRed(resized, 1400);
    expect(top).toBeLessThan(90);
    expect(bottom).toBeGreaterThan(170);

    expect(outcome.media).toEqual({
      format: 'jpeg',
      width: 3000,
      height: 4000,
      orientation: 6,
      space: 'srgb',
      hasAlpha: false,
      pages: 1,
      exif: {
        make: 'Canon',
        model: 'Canon EOS 5D Mark IV',
        software: 'sample-generator',
        lensMake: 'Canon',
        lens: 'EF50mm f/1.8 STM',
        takenAt: '2024-05-01T12:34:56+02:00',
        exposureTime: 0.004,
        exposure: '1/250',
        fNumber: 2.8,
        iso: 400,
        focalLength: 50,
      },
      gps: true,
    });
    expect(JSON.stringify(outcome.media)).not.toMatch(/48\.|51\/|latitude|longitude/i);
    // The original is untouched.
    expect(await sha256(sample('camera'))).toBe(before);
  });

  test('small camera JPEG is not enlarged', async () => {
    const outcome = ok((await run(sample('smallCamera'))).outcome);
    await checkAll(outcome);
    expect(output(outcome, 'resized')).toMatchObject({ width: 300, height: 400 });
    expect(output(outcome, 'webp')).toMatchObject({ width: 300, height: 400 });
    expect(output(outcome, 'thumbnail')).toMatchObject({ width: 225, height: 300 });
    expect(outcome.media).toMatchObject({ width: 300, height: 400, orientation: 6, gps: true });
  });

  test('PNG with alpha: webp keeps transparency, JPEGs are flattened onto white', async () => {
    const outcome = ok((await run(sample('alpha'))).outcome);
    await checkAll(outcome);
    expect(outcome.media).toMatchObject({ format: 'png', width: 800, height: 600, hasAlpha: true, exif: null, gps: false, orientation: 1 });
    expect(output(outcome, 'resized')).toMatchObject({ width: 800, height: 600 });
    expect(output(outcome, 'thumbnail')).toMatchObject({ width: 300, height: 225 });

    const webp = output(outcome, 'webp');
    expect((await sharp(webp.path).metadata()).hasAlpha).toBe(true);
    expect((await pixel(webp.path, 0, 0))[3]).toBe(0); // transparent corner
    expect((await pixel(webp.path, 400, 300))[3]).toBe(255); // opaque centre

    for (const name of ['resized', 'thumbnail'] as const) {
      const jpeg = output(outcome, name).path;
      expect((await sharp(jpeg).metadata()).channels).toBe(3);
      for (const v of await pixel(jpeg, 0, 0)) expect(v).toBeGreaterThan(245); // white
    }
  });

  test('palette PNG with a transparent colour', async () => {
    expect((await sharp(sample('palette')).metadata()).isPalette).toBe(true);
    const outcome = ok((await run(sample('palette'))).outcome);
    await checkAll(outcome);
    expect(outcome.media).toMatchObject({ format: 'png', width: 640, height: 480, hasAlpha: true });
    expect((await pixel(output(outcome, 'webp').path, 10, 10))[3]).toBe(0);
    for (const v of await pixel(output(outcome, 'resized').path, 10, 10)) expect(v).toBeGreaterThan(245);
  });

  test.each([
    ['gif', 'gif'],
    ['animatedWebp', 'webp'],
  ])('animated %s: stills from the first frame', async (name, format) => {
    const outcome = ok((await run(sample(name))).outcome);
    await checkAll(outcome);
    expect(outcome.media).toMatchObject({ format, width: 240, height: 160, pages: 3 });
    for (const out of outcome.outputs) {
      expect(out).toMatchObject({ width: 240, height: 160 });
      expect((await sharp(out.path).metadata()).pages ?? 1).toBe(1);
    }
  });

  test('CMYK JPEG and 16-bit PNG come out as 8-bit sRGB', async () => {
    const cmyk = ok((await run(sample('cmyk'))).outcome);
    await checkAll(cmyk);
    expect(cmyk.media).toMatchObject({ space: 'cmyk' });
    const resized = await sharp(output(cmyk, 'resized').path).metadata();
    expect({ space: resized.space, channels: resized.channels }).toEqual({ space: 'srgb', channels: 3 });

    const deep = ok((await run(sample('deep'))).outcome);
    await checkAll(deep);
    expect(deep.media).toMatchObject({ hasAlpha: true });
    const webp = await sharp(output(deep, 'webp').path).metadata();
    expect({ depth: webp.depth, hasAlpha: webp.hasAlpha }).toEqual({ depth: 'uchar', hasAlpha: true });
  });

  test('an embedded ICC profile is honoured: Display P3 red comes out as sRGB red', async () => {
    const stored = await sharp(sample('p3'), { ignoreIcc: true }).extract({ left: 0, top: 0, width: 1, height: 1 }).raw().toBuffer();
    expect(stored[1]).toBeGreaterThan(30); // the file's own numbers are not sRGB red...
    const outcome = ok((await run(sample('p3'))).outcome);
    await checkAll(outcome);
    const [r, g, b] = await pixel(output(outcome, 'resized').path, 32, 32);
    expect(r).toBeGreaterThan(240); // ...the outputs' are
    expect(g).toBeLessThan(15);
    expect(b).toBeLessThan(15);
  });

  test('truncated JPEG is refused, nothing written', async () => {
    const { outcome, outputDir } = await run(sample('truncated'));
    expect(refused(outcome)).toMatch(/^cannot decode the jpeg image: .*premature end/i);
    expect(await readdir(outputDir)).toEqual([]);
  });

  test('JPEG magic followed by garbage is refused', async () => {
    const { outcome, outputDir } = await run(sample('corrupt'));
    expect(refused(outcome)).toMatch(/^not a readable image: /);
    expect(await readdir(outputDir)).toEqual([]);
  });

  test('decompression bomb is refused from its header, before decoding', async () => {
    const { outcome, outputDir } = await run(sample('bomb'));
    expect(refused(outcome)).toBe('image is 20000 x 20000 pixels, over the limit of 50000000');
    expect(await readdir(outputDir)).toEqual([]);
    // The limit is the task's: a normal photo over a small limit is refused the same way.
    expect(refused((await run(sample('smallCamera'), 100_000)).outcome)).toBe(
      'image is 400 x 300 pixels, over the limit of 100000',
    );
  });

  test('iPhone HEIC (48 HEVC tiles in a grid, irot, EXIF Orientation 6 and GPS): upright portrait outputs, turned once', async () => {
    const started = performance.now();
    const { outcome, outputDir } = await run(sample('iphone'));
    const ms = performance.now() - started;
    const done = ok(outcome);
    await checkAll(done);
    // Displayed 3024x4032, portrait box 1080x1920: 1080/3024 -> 1080x1440 (not 810x1080).
    expect(output(done, 'resized')).toMatchObject({ width: 1080, height: 1440 });
    expect(output(done, 'webp')).toMatchObject({ width: 1080, height: 1440 });
    expect(output(done, 'thumbnail')).toMatchObject({ width: 225, height: 300 });
    // Stored left edge (dark red) at the top, right edge (bright red) at the bottom: turned 90°
    // clockwise exactly once (turned twice, the picture would lie landscape, 1440x1080).
    const resized = output(done, 'resized').path;
    expect(await meanRed(resized, 0)).toBeLessThan(90);
    expect(await meanRed(resized, 1400)).toBeGreaterThan(170);
    expect(done.media).toMatchObject({
      format: 'heif',
      compression: 'hevc',
      width: 3024,
      height: 4032,
      orientation: 6,
      gps: true,
      exif: { make: 'Apple', model: 'iPhone 15 Pro', takenAt: '2024-06-01T09:15:00+01:00', exposure: '1/120', fNumber: 1.8, iso: 80 },
    });
    expect(JSON.stringify(done.media)).not.toMatch(/59\.|latitude|longitude/i);
    // heif-convert's intermediate file is gone; only the outputs are left.
    expect((await readdir(outputDir)).sort()).toEqual(['image.webp', 'resized.jpg', 'thumbnail.jpg']);
    console.log(`[imageJob] 12 MP iPhone HEIC: ${Math.round(ms)} ms`);
  });

  test('landscape HEIC without irot fits the landscape box, unturned', async () => {
    const done = ok((await run(sample('iphoneLandscape'))).outcome);
    await checkAll(done);
    expect(done.media).toMatchObject({ format: 'heif', width: 1600, height: 1200, orientation: 1 });
    expect(output(done, 'resized')).toMatchObject({ width: 1440, height: 1080 });
    // Not turned: the stored left edge (dark red) is still on the left.
    const [left] = await pixel(output(done, 'resized').path, 5, 540);
    const [right] = await pixel(output(done, 'resized').path, 1434, 540);
    expect(left!).toBeLessThan(90);
    expect(right!).toBeGreaterThan(170);
  });

  test('iPhone HEIC in Display P3 (an ICC profile in colr, as iPhones write): sRGB red comes out sRGB red', async () => {
    const done = ok((await run(sample('iphoneP3'))).outcome);
    await checkAll(done);
    const [r, g, b] = await pixel(output(done, 'resized').path, 256, 256);
    expect(r).toBeGreaterThan(240);
    expect(g).toBeLessThan(20);
    expect(b).toBeLessThan(20);
  });

  test('a HEIC whose tiles are not HEVC ends with heif-convert\'s reason, nothing left', async () => {
    const { outcome, outputDir } = await run(sample('brokenHeic'));
    expect(refused(outcome)).toMatch(/^cannot decode the HEIC image: .+/);
    expect(refused(outcome)).not.toContain(dir);
    expect(await readdir(outputDir)).toEqual([]);
  });

  test('heif-convert over the time limit is killed: timed out, nothing left', async () => {
    const outputDir = await mkdtemp(path.join(dir, 'heic-timeout-'));
    const outcome = await imageJob({ kind: 'image', input: sample('iphone'), outputDir, timeoutMs: 200, maxPixels: MAX_PIXELS });
    expect(refused(outcome)).toMatch(/^timed out after \d+(\.\d)? s \(limit 0\.2 s\)$/);
    expect(await readdir(outputDir)).toEqual([]);
    expect(await liveProcessesWith(outputDir)).toEqual([]);
  });

  test('AVIF (AV1 in HEIF) is decoded by sharp itself, landscape box', async () => {
    const done = ok((await run(sample('avif'))).outcome);
    await checkAll(done);
    expect(done.media).toMatchObject({ format: 'heif', compression: 'av1', width: 2400, height: 1600 });
    expect(output(done, 'resized')).toMatchObject({ width: 1620, height: 1080 });
  });

  test('an output that cannot be written throws and leaves no partial outputs', async () => {
    const outputDir = await mkdtemp(path.join(dir, 'blocked-'));
    await mkdir(path.join(outputDir, 'image.webp')); // a directory where the webp should go
    await expect(imageJob({ kind: 'image', input: sample('smallCamera'), outputDir, timeoutMs: TIMEOUT_MS, maxPixels: MAX_PIXELS })).rejects.toThrow();
    expect(await readdir(outputDir)).toEqual(['image.webp']);
  });

  test('readExif never throws on damaged EXIF', () => {
    const real = Buffer.from('Exif\0\0II*\0\x08\0\0\0\x02\0\x0f\x01\x02\0\x06\0\0\0\x26\0\0\0\x25\x88\x04\0\x01\0\0\0\xff\xff\0\0', 'latin1');
    expect(readExif(real)?.hasGps).toBe(false);
    let seed = 7;
    for (let n = 0; n < 300; n++) {
      const junk = Buffer.alloc(64 + (n % 200));
      for (let i = 0; i < junk.length; i++) junk[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
      junk.write(n % 2 ? 'II*\0' : 'MM\0*', 0, 'latin1');
      expect(() => readExif(junk)).not.toThrow();
    }
    expect(readExif(Buffer.from('nothing'))).toBeUndefined();
  });
});

describe('imageJob on a piscina worker thread', () => {
  test('a task that crashes its thread fails that task only: the next one runs on a new thread', async () => {
    const pool = createMediaPool(1, new URL('./support/crashingMediaWorker.ts', import.meta.url));
    try {
      const outputDir = await mkdtemp(path.join(dir, 'crash-'));
      const crashed = pool.run({ kind: 'image', input: path.join(dir, 'crash-the-thread'), outputDir, timeoutMs: TIMEOUT_MS, maxPixels: MAX_PIXELS });
      const next = pool.run({ kind: 'image', input: sample('smallCamera'), outputDir, timeoutMs: TIMEOUT_MS, maxPixels: MAX_PIXELS });
      await expect(crashed).rejects.toThrow('the media thread crashed');
      await checkAll(ok(await next));
    } finally {
      await pool.close();
    }
  });

  test('a cancelled HEIC task kills and reaps its heif-convert on the thread: nothing left running, no zombie', async () => {
    const pool = createMediaPool(1);
    try {
      const outputDir = await mkdtemp(path.join(dir, 'cancel-'));
      const controller = new AbortController();
      const running = pool.run({ kind: 'image', input: sample('iphone'), outputDir, timeoutMs: TIMEOUT_MS, maxPixels: MAX_PIXELS }, { signal: controller.signal });
      running.catch(() => undefined);
      await eventually('heif-convert to run', async () => (await liveProcessesWith(outputDir)).some((p) => p.includes('heif-convert')), 30_000);
      controller.abort();
      await expect(running).rejects.toThrow();
      expect(await liveProcessesWith(outputDir)).toEqual([]);
      expect((await zombieChildren()).filter((line) => line.includes('heif-convert'))).toEqual([]);
      expect(await readdir(outputDir)).toEqual([]);
    } finally {
      await pool.close();
    }
  });

  test('same outcome through the pool as in-process', async () => {
    const pool = new Piscina<ImageTask, MediaOutcome>({
      filename: fileURLToPath(new URL('./support/imageWorker.ts', import.meta.url)),
      maxThreads: 1,
    });
    try {
      const outputDir = await mkdtemp(path.join(dir, 'pool-'));
      const outcome = ok(await pool.run({ kind: 'image', input: sample('smallCamera'), outputDir, timeoutMs: TIMEOUT_MS, maxPixels: MAX_PIXELS }));
      await checkAll(outcome);
      expect(outcome.media).toMatchObject({ width: 300, height: 400, gps: true });
      // Refusals cross the thread boundary as plain data.
      const bomb = await pool.run({ kind: 'image', input: sample('bomb'), outputDir, timeoutMs: TIMEOUT_MS, maxPixels: MAX_PIXELS });
      expect(bomb).toEqual({ ok: false, reason: 'image is 20000 x 20000 pixels, over the limit of 50000000' });
    } finally {
      await pool.destroy();
    }
  });
});
