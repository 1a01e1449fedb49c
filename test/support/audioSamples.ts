import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { ffmpegRun } from './videoSamples.ts';

/**
 * Audio files for the audio tests, generated at run time with ffmpeg (nothing binary is
 * committed): a voice-like signal (a tone under a slow tremolo, with a pause) so loudness
 * normalisation has something to measure. Each generator writes one file into `dir` and returns its path.
 */

export interface SoundOptions {
  seconds?: number;
  /** Gain of the source, dB (a quiet phone recording is well under the target). */
  gainDb?: number;
  channels?: 1 | 2;
}

function source({ seconds = 4, gainDb = -12, channels = 1 }: SoundOptions): string[] {
  const layout = channels === 2 ? ',aformat=channel_layouts=stereo' : '';
  return ['-f', 'lavfi', '-i', `sine=frequency=330:sample_rate=48000:d=${seconds},tremolo=f=3:d=0.7,volume=${gainDb}dB${layout}`];
}

/** AAC in an M4A with the `M4A ` brand, as an iPhone's Voice Memos writes it (file-type: audio/x-m4a). */
export async function phoneM4a(dir: string, options: SoundOptions = {}): Promise<string> {
  const file = path.join(dir, 'voice-memo.m4a');
  await ffmpegRun([...source(options), '-c:a', 'aac', '-b:a', '64k', '-f', 'ipod', file]);
  return file;
}

/** AAC in an MP4 with the `isom` brand, as Android recorders write their m4a (file-type: video/mp4). */
export async function isomM4a(dir: string, options: SoundOptions = {}): Promise<string> {
  const file = path.join(dir, 'recording-isom.m4a');
  await ffmpegRun([...source(options), '-c:a', 'aac', '-b:a', '64k', '-brand', 'isom', '-f', 'mp4', file]);
  return file;
}

export async function mp3(dir: string, options: SoundOptions = {}): Promise<string> {
  const file = path.join(dir, 'song.mp3');
  await ffmpegRun([...source(options), '-c:a', 'libmp3lame', '-b:a', '96k', file]);
  return file;
}

/** An MP3 with its cover art (an attached picture stream, as music files carry). */
export async function mp3WithCoverArt(dir: string): Promise<string> {
  const file = path.join(dir, 'song-with-cover.mp3');
  await ffmpegRun([
    ...source({}), '-f', 'lavfi', '-i', 'testsrc2=s=300x300:d=0.04',
    ...['-map', '0:a', '-map', '1:v', '-frames:v', '1', '-c:a', 'libmp3lame', '-c:v', 'mjpeg', '-disposition:v', 'attached_pic', '-id3v2_version', '3', file],
  ]);
  return file;
}

export async function wav(dir: string, options: SoundOptions = {}): Promise<string> {
  const file = path.join(dir, `take-${options.seconds ?? 4}s-${options.gainDb ?? -12}dB-${options.channels ?? 1}ch.wav`);
  await ffmpegRun([...source(options), '-c:a', 'pcm_s16le', file]);
  return file;
}

export async function opusOgg(dir: string, options: SoundOptions = {}): Promise<string> {
  const file = path.join(dir, 'note.ogg');
  await ffmpegRun([...source(options), '-c:a', 'libopus', '-b:a', '32k', file]);
  return file;
}

/**
 * Opus in a WebM written to a pipe, as a browser's MediaRecorder makes it: no duration and no
 * cues in the header (file-type: video/webm).
 */
export async function recordedWebm(dir: string, options: SoundOptions = {}): Promise<string> {
  const file = path.join(dir, 'recorded.webm');
  const { stdout } = await promisify(execFile)(
    'ffmpeg',
    ['-hide_banner', '-nostdin', '-loglevel', 'error', ...source(options), '-c:a', 'libopus', '-b:a', '32k', '-f', 'webm', 'pipe:1'],
    { encoding: 'buffer', maxBuffer: 64 << 20 },
  );
  await writeFile(file, stdout);
  return file;
}

/** Digital silence, AAC in M4A (a recording made with the microphone muted). */
export async function silentM4a(dir: string): Promise<string> {
  const file = path.join(dir, 'silent.m4a');
  await ffmpegRun(['-f', 'lavfi', '-i', 'anullsrc=r=48000:cl=mono', '-t', '3', '-c:a', 'aac', '-f', 'ipod', file]);
  return file;
}

/** An M4A cut short before its index (moov, written last): the upload of a phone that lost its connection. */
export async function truncatedM4a(dir: string): Promise<string> {
  const whole = await phoneM4a(dir);
  const file = path.join(dir, 'truncated.m4a');
  const bytes = await readFile(whole);
  await writeFile(file, bytes.subarray(0, Math.floor(bytes.length / 2)));
  return file;
}

/** Integrated loudness (LUFS) as ffmpeg's ebur128 filter measures it. */
export async function integratedLoudness(file: string): Promise<number> {
  const { stderr } = await promisify(execFile)('ffmpeg', ['-hide_banner', '-nostats', '-i', file, '-af', 'ebur128', '-f', 'null', '-'], { maxBuffer: 64 << 20 });
  const summary = stderr.slice(stderr.lastIndexOf('Integrated loudness:'));
  const match = /I:\s+(-?[\d.]+) LUFS/.exec(summary);
  if (!match) throw new Error(`ebur128 printed no integrated loudness: ${stderr.slice(-500)}`);
  return Number(match[1]);
}
