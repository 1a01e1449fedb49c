import { describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { iphoneHeic } from './support/heicSamples.ts';
import { alphaPng, avifPhoto, cameraJpeg, photoPixels, pixelBombPng, truncatedJpeg } from './support/imageSamples.ts';
import { useMediaServer } from './support/mediaServer.ts';
import { setups } from './support/testServer.ts';
import { corruptMp4, h264Clip, phoneClip, topLevelBoxes } from './support/videoSamples.ts';

/** The whole pipeline for images and videos: upload → inspect → process → outputs served. */
describe.each(setups)('media processing (%s)', (setup) => {
  const media = useMediaServer(setup, { WORKER_THREADS: '2' });
  const { upload: uploadFile, fetchOutput } = media;

  it('turns a camera JPEG into upright resized, thumbnail and WebP outputs without GPS', async () => {
    const status = await uploadFile(await cameraJpeg(media.dir, 2000, 1500), 'IMG_0001.jpg', 'image/jpeg');
    expect(status.status).toBe('ready');
    expect(status.media).toMatchObject({ format: 'jpeg', width: 1500, height: 2000, orientation: 6, gps: true });
    expect((status.media as { exif: { make: string } }).exif.make).toBe('Canon');
    const byName = Object.fromEntries(status.outputs.map((o) => [o.name, o]));
    expect(Object.keys(byName).sort()).toEqual(['resized', 'thumbnail', 'webp']);
    // Orientation 6 means the 2000x1500 pixels display as 1500x2000: portrait, fitted into the portrait box 1080x1920.
    expect(byName.resized).toMatchObject({ contentType: 'image/jpeg', width: 1080, height: 1440 });
    expect(byName.thumbnail!.height).toBe(300);
    expect(byName.webp!.contentType).toBe('image/webp');
    for (const output of status.outputs) {
      const meta = await sharp(await fetchOutput(output.url)).metadata();
      expect({ name: output.name, width: meta.width, height: meta.height }).toEqual({ name: output.name, width: output.width, height: output.height });
      expect(meta.exif).toBeUndefined();
    }
  });

  it('turns an iPhone HEIC declared image/heif (as Uppy in Chromium does) into upright portrait outputs without GPS', async () => {
    const heic = await iphoneHeic(media.dir, photoPixels(2048, 1536), { width: 2048, height: 1536 });
    const status = await uploadFile(heic, 'IMG_0002.HEIC', 'image/heif');
    expect(status.status).toBe('ready');
    expect(status.detectedType).toBe('image/heic');
    expect(status.media).toMatchObject({ format: 'heif', compression: 'hevc', width: 1536, height: 2048, orientation: 6, gps: true });
    const byName = Object.fromEntries(status.outputs.map((o) => [o.name, o]));
    expect(byName.resized).toMatchObject({ width: 1080, height: 1440 });
    expect(byName.webp).toMatchObject({ width: 1080, height: 1440 });
    expect(byName.thumbnail).toMatchObject({ width: 225, height: 300 });
    for (const output of status.outputs) {
      const bytes = await fetchOutput(output.url);
      const meta = await sharp(bytes).metadata();
      expect({ name: output.name, width: meta.width, height: meta.height, exif: meta.exif, orientation: meta.orientation }).toEqual({
        name: output.name, width: output.width, height: output.height, exif: undefined, orientation: undefined,
      });
      expect(bytes.includes('iPhone')).toBe(false);
    }
  });

  it('turns an AVIF into landscape outputs', async () => {
    const status = await uploadFile(await avifPhoto(media.dir), 'PXL_0001.avif', 'image/avif');
    expect(status.status).toBe('ready');
    expect(status.media).toMatchObject({ format: 'heif', compression: 'av1', width: 2400, height: 1600 });
    expect(status.outputs.find((o) => o.name === 'resized')).toMatchObject({ width: 1620, height: 1080 });
  });

  it('keeps transparency in the WebP of a PNG with alpha', async () => {
    const status = await uploadFile(await alphaPng(media.dir), 'logo.png', 'image/png');
    expect(status.status).toBe('ready');
    const webp = status.outputs.find((o) => o.name === 'webp')!;
    expect((await sharp(await fetchOutput(webp.url)).metadata()).hasAlpha).toBe(true);
  });

  it('fails a truncated JPEG and a pixel bomb with a reason, and keeps working', async () => {
    const truncated = await uploadFile(await truncatedJpeg(media.dir), 'cut.jpg', 'image/jpeg');
    expect(truncated).toMatchObject({ status: 'failed', outputs: [] });
    expect(truncated.reason).toBeTruthy();
    const bomb = await uploadFile(await pixelBombPng(media.dir), 'bomb.png', 'image/png');
    expect(bomb.status).toBe('failed');
    expect(bomb.reason).toMatch(/20000 x 20000 pixels, over the limit/);
    const after = await uploadFile(await alphaPng(media.dir, 100, 80), 'after.png', 'image/png');
    expect(after.status).toBe('ready');
  });

  it('transcodes a video to a faststart H.264 MP4 with a poster and a thumbnail', async () => {
    const status = await uploadFile(await h264Clip(media.dir, { seconds: 3, width: 640, height: 360 }), 'clip.mp4', 'video/mp4', 120_000);
    expect(status.status).toBe('ready');
    expect(status.media).toMatchObject({ width: 640, height: 360, hasAudio: true, videoCodec: 'h264', audioCodec: 'aac' });
    expect(status.jobs.find((j) => j.kind === 'video')).toMatchObject({ status: 'done', progress: 100 });
    const byName = Object.fromEntries(status.outputs.map((o) => [o.name, o]));
    expect(byName.mp4).toMatchObject({ contentType: 'video/mp4', width: 640, height: 360 });
    expect(byName.poster).toMatchObject({ contentType: 'image/jpeg', width: 640, height: 360 });
    const boxes = topLevelBoxes(await fetchOutput(byName.mp4!.url)).map((b) => b.type);
    expect(boxes.indexOf('moov')).toBeLessThan(boxes.indexOf('mdat'));
  });

  it('honours the rotation of a phone video', async () => {
    const status = await uploadFile(await phoneClip(media.dir, 1), 'phone.mp4', 'video/mp4', 120_000);
    expect(status.status).toBe('ready');
    // Stored 1920x1080 with rotation 90: upright 1080x1920, and the portrait box keeps it whole.
    expect(status.outputs.find((o) => o.name === 'mp4')).toMatchObject({ width: 1080, height: 1920 });
    expect(status.outputs.find((o) => o.name === 'poster')).toMatchObject({ width: 1080, height: 1920 });
  });

  it('fails a corrupt MP4 with ffmpeg’s reason', async () => {
    const status = await uploadFile(await corruptMp4(media.dir), 'broken.mp4', 'video/mp4');
    expect(status).toMatchObject({ status: 'failed', outputs: [] });
    expect(status.reason).toBeTruthy();
    expect((await fetch(`${media.url}/api/uploads/${status.id}/files/original`)).status).toBe(410);
  });
});
