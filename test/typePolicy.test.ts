import { describe, expect, it } from 'vitest';
import { ConfigError, defaultTypePolicy, loadConfig } from '../server/infra/settings/config.ts';
import { allowedTypeOf, narrowPolicy, refuseDeclared, refuseDetected } from '../hooks/typePolicy.ts';

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

/** Audio: file-type names containers, the upload says whether it holds sound or pictures. */
describe('type policy: audio and its container families', () => {
  const upload = (filename: string, claimedType: string | null) => ({ filename, claimedType, size: 2_000_000 });

  it.each([
    ['audio/x-m4a', 'Voice Memo.m4a', { mime: 'audio/x-m4a', ext: 'm4a' }, 'audio/mp4'], // iPhone, Safari
    ['audio/mp4', 'Recording.m4a', { mime: 'video/mp4', ext: 'mp4' }, 'audio/mp4'], // Android, brand isom
    [null, 'Recording.m4a', { mime: 'video/mp4', ext: 'mp4' }, 'audio/mp4'],
    ['audio/mpeg', 'song.mp3', { mime: 'audio/mpeg', ext: 'mp3' }, 'audio/mpeg'],
    ['audio/x-wav', 'take.wav', { mime: 'audio/wav', ext: 'wav' }, 'audio/wav'],
    ['audio/ogg', 'note.opus', { mime: 'audio/ogg; codecs=opus', ext: 'opus' }, 'audio/ogg'],
    ['audio/webm', 'voice.webm', { mime: 'video/webm', ext: 'webm' }, 'audio/webm'], // MediaRecorder
    ['video/webm', 'clip.webm', { mime: 'video/webm', ext: 'webm' }, 'video/webm'],
    [null, 'clip.webm', { mime: 'video/webm', ext: 'webm' }, 'video/webm'],
    ['video/mp4', 'clip.mp4', { mime: 'video/mp4', ext: 'mp4' }, 'video/mp4'],
  ])('claimed %s as %s, detected %j: accepted as %s', (claimed, filename, detected, member) => {
    if (claimed) expect(refuseDeclared(defaultTypePolicy, { filename, type: claimed, size: 2_000_000 })).toBeUndefined();
    expect(refuseDetected(defaultTypePolicy, upload(filename, claimed), detected)).toBeUndefined();
    expect(allowedTypeOf(defaultTypePolicy, upload(filename, claimed), detected.mime)?.mime).toBe(member);
  });

  it('the families are no wildcard: an MP3 claimed as m4a, a WebM named .m4a, a video claimed as mp3 are refused', () => {
    expect(refuseDetected(defaultTypePolicy, upload('song.m4a', 'audio/mp4'), { mime: 'audio/mpeg', ext: 'mp3' })).toBe(
      'content is audio/mpeg but the upload claimed audio/mp4',
    );
    expect(refuseDetected(defaultTypePolicy, upload('voice.m4a', null), { mime: 'video/webm', ext: 'webm' })).toBe(
      'content is video/webm but the filename ends in .m4a',
    );
    expect(refuseDetected(defaultTypePolicy, upload('clip.mp3', 'audio/mpeg'), { mime: 'video/mp4', ext: 'mp4' })).toBe(
      'content is video/mp4 but the upload claimed audio/mpeg',
    );
  });

  it('a token allowing only audio admits an Android m4a (video/mp4 by its bytes) and not a video', () => {
    const audioOnly = narrowPolicy(defaultTypePolicy, { types: ['audio/mp4'] });
    expect(refuseDetected(audioOnly, upload('Recording.m4a', 'audio/mp4'), { mime: 'video/mp4', ext: 'mp4' })).toBeUndefined();
    expect(refuseDetected(audioOnly, upload('clip.mp4', 'video/mp4'), { mime: 'video/mp4', ext: 'mp4' })).toMatch(/claimed video\/mp4/);
  });
});

describe('audio settings', () => {
  it('MAX_AUDIO_SIZE limits every audio type of the default policy; AUDIO_LOUDNESS and WAVEFORM_POINTS are read', () => {
    const config = loadConfig({ MAX_AUDIO_SIZE: '50MiB', AUDIO_LOUDNESS: '-23', WAVEFORM_POINTS: '400', AUDIO_TIMEOUT: '2m' });
    const audio = config.typePolicy.filter((t) => t.mime.startsWith('audio/'));
    expect(audio.map((t) => t.mime)).toEqual(['audio/mp4', 'audio/mpeg', 'audio/wav', 'audio/ogg', 'audio/webm']);
    expect(new Set(audio.map((t) => t.maxSize))).toEqual(new Set([50 * 1024 * 1024]));
    expect(config.typePolicy.find((t) => t.mime === 'video/mp4')?.maxSize).toBe(500 * 1024 * 1024);
    expect(config).toMatchObject({ audioLoudness: -23, waveformPoints: 400, audioTimeoutMs: 120_000 });
    expect(loadConfig({})).toMatchObject({ audioLoudness: -16, waveformPoints: 1000 });
  });

  it('bad audio settings are all named at once', () => {
    const problems = (() => {
      try {
        loadConfig({ AUDIO_LOUDNESS: '3', WAVEFORM_POINTS: '2', MAX_AUDIO_SIZE: '1MiB', TYPE_POLICY: 'audio/mpeg:mp3:5MiB' });
      } catch (err) {
        return (err as ConfigError).problems;
      }
      return [];
    })();
    expect(problems.sort()).toEqual([
      'AUDIO_LOUDNESS: "3" is not a whole number from -70 to -5',
      'MAX_AUDIO_SIZE: TYPE_POLICY is set, give the audio limits there',
      'WAVEFORM_POINTS: "2" is not a whole number from 10 to 100000',
    ]);
  });
});
