import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { integratedLoudness, isomM4a, mp3, phoneM4a, recordedWebm } from './support/audioSamples.ts';
import { freePort } from './support/freePort.ts';
import { cameraJpeg } from './support/imageSamples.ts';
import { useMediaServer } from './support/mediaServer.ts';
import { setups } from './support/testServer.ts';
import { silentClip, topLevelBoxes } from './support/videoSamples.ts';
import { startWebhookReceiver, webhookSecret, type WebhookReceiver } from './support/webhookReceiver.ts';

/** Voice notes and music through the whole pipeline: upload → inspect → audio job → outputs served; placeholders in the API. */
describe.each(setups)('audio and placeholders (%s)', (setup) => {
  const secret = webhookSecret();
  let receiver: WebhookReceiver | undefined;
  const media = useMediaServer(setup, async () => {
    receiver = await startWebhookReceiver(secret);
    const port = await freePort();
    return {
      WORKER_THREADS: '2', WAVEFORM_POINTS: '200', AUDIO_LOUDNESS: '-18',
      // Webhook bodies carry absolute links: the server's own address, known before it starts.
      PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}`, WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: secret,
    };
  });
  afterAll(async () => {
    await receiver?.stop();
  });
  const uploadFile = (file: string, filename: string, filetype: string | undefined) => media.upload(file, filename, filetype, 120_000);
  const { fetchOutput } = media;

  it.each([
    ['an iPhone voice memo', phoneM4a, 'Voice Memo.m4a', 'audio/x-m4a', 'audio/x-m4a'],
    ['an Android m4a (brand isom, video/mp4 by its bytes)', isomM4a, 'Recording.m4a', 'audio/mp4', 'video/mp4'],
    ['a browser-recorded WebM (video/webm by its bytes, no duration)', recordedWebm, 'voice.webm', 'audio/webm', 'video/webm'],
    ['an mp3 sent without a type', mp3, 'song.mp3', undefined, 'audio/mpeg'],
  ])(
    '%s becomes a normalised m4a and a waveform, served like any output',
    async (_name, make, filename, filetype, detectedType) => {
      const status = await uploadFile(await make(media.dir), filename, filetype);
      expect(status).toMatchObject({ status: 'ready', reason: null, detectedType });
      expect(status.jobs.map((j) => [j.kind, j.status])).toContainEqual(['audio', 'done']);
      expect(status.media).toMatchObject({ sampleRate: 48000, channels: 1, loudness: { target: -18 } });
      expect((status.media as { duration: number }).duration).toBeCloseTo(4, 1);
      const byName = Object.fromEntries(status.outputs.map((o) => [o.name, o]));
      expect(Object.keys(byName).sort()).toEqual(['audio', 'waveform']);
      expect(byName.audio).toMatchObject({ contentType: 'audio/mp4', width: null, height: null });

      const audio = await fetchOutput(byName.audio!.url);
      expect(audio.length).toBe(byName.audio!.size);
      const boxes = topLevelBoxes(audio).map((b) => b.type);
      expect(boxes.indexOf('moov')).toBeLessThan(boxes.indexOf('mdat'));
      const served = path.join(media.dir, `served-${status.id}.m4a`);
      await writeFile(served, audio);
      expect(Math.abs((await integratedLoudness(served)) - -18)).toBeLessThanOrEqual(1);

      const waveform = JSON.parse((await fetchOutput(byName.waveform!.url)).toString('utf8')) as { length: number; data: number[] };
      expect(waveform.length).toBe(200);
      expect(waveform.data).toHaveLength(400);
      expect(Math.max(...waveform.data)).toBeLessThanOrEqual(127);
      expect(Math.min(...waveform.data)).toBeGreaterThanOrEqual(-128);
    },
    180_000,
  );

  it('a video without sound declared as audio fails with the reason, and its bytes are not served', async () => {
    const status = await uploadFile(await silentClip(media.dir, { seconds: 1 }), 'not-a-voice-note.m4a', 'audio/mp4');
    expect(status).toMatchObject({ status: 'failed', outputs: [], detectedType: 'video/mp4' });
    expect(status.reason).toMatch(/^a video without sound: the file has no audio stream \(found: video h264\)/);
    expect((await fetch(`${media.url}/api/uploads/${status.id}/files/original`)).status).toBe(410);
  }, 180_000);

  it("an image's thumbhash is in its status, in the list and in its webhook, in its own shape", async () => {
    const status = await uploadFile(await cameraJpeg(media.dir, 1200, 900), 'IMG_0003.jpg', 'image/jpeg');
    expect(status.status).toBe('ready');
    const thumbhash = (status.media as { thumbhash?: { hash: string; aspectRatio: number; averageColor: string } }).thumbhash;
    expect(thumbhash).toMatchObject({ hash: expect.stringMatching(/^[A-Za-z0-9+/]+=*$/), averageColor: expect.stringMatching(/^#[0-9a-f]{6}$/) });
    expect(thumbhash!.aspectRatio).toBeCloseTo(0.75, 1); // orientation 6: 900x1200 upright
    const list = (await (await fetch(`${media.url}/api/uploads`)).json()) as { items: Array<{ id: string; media: { thumbhash?: unknown } | null }> };
    expect(list.items.find((item) => item.id === status.id)?.media?.thumbhash).toEqual(thumbhash);
    const ready = await receiver!.waitFor('upload.ready', (d) => d.payload.type === 'upload.ready' && d.payload.data.id === status.id);
    expect((ready.payload.data.media as { thumbhash?: unknown }).thumbhash).toEqual(thumbhash);
  }, 180_000);
});
