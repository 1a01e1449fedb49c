import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Probe, ProbeStream } from '../../processors/ffprobe.ts';
import { randomBytesOf } from './samples.ts';

/**
 * Video files for the video-processing tests, generated at run time with ffmpeg's lavfi sources
 * (nothing binary is committed). Each generator writes one file into `dir` and returns its path.
 * Sources are encoded with x264 `ultrafast`: the tests are about the processor, not these.
 */

const run = promisify(execFile);

export async function ffmpegRun(args: string[]): Promise<void> {
  try {
    await run('ffmpeg', ['-hide_banner', '-nostdin', '-loglevel', 'error', ...args, '-y'], { maxBuffer: 16 << 20 });
  } catch (err) {
    const { stderr } = err as { stderr?: string };
    throw new Error(`ffmpeg ${args.join(' ')} failed: ${stderr ?? String(err)}`);
  }
}

/** ffprobe's JSON for a file (streams and format). */
export async function ffprobeJson(file: string): Promise<ProbeJson> {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams', file], { maxBuffer: 16 << 20 });
  return JSON.parse(stdout) as ProbeJson;
}
/** ffprobe's own JSON as the processor reads it, plus the stream fields only the tests check. */
export interface ProbeJson extends Probe {
  streams: Array<ProbeStream & { pix_fmt?: string; bit_rate?: string }>;
}

export function makeSampleDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'video-samples-'));
}
export function removeSampleDir(dir: string): Promise<void> {
  return rm(dir, { recursive: true, force: true });
}

export interface ClipOptions {
  seconds?: number;
  width?: number;
  height?: number;
  fps?: number;
  audio?: boolean;
  /** `+faststart` (moov first); off by default, like most cameras' files. */
  faststart?: boolean;
  name?: string;
}

/** testsrc2 (+ a 440 Hz sine), H.264 + AAC in MP4. Default: 10 s, 1280x720, 30 fps, with audio. */
export async function h264Clip(dir: string, options: ClipOptions = {}): Promise<string> {
  const { seconds = 10, width = 1280, height = 720, fps = 30, audio = true, faststart = false } = options;
  const file = path.join(dir, options.name ?? `clip-${width}x${height}-${seconds}s${audio ? '' : '-silent'}.mp4`);
  await ffmpegRun([
    ...['-f', 'lavfi', '-i', `testsrc2=s=${width}x${height}:r=${fps}:d=${seconds}`],
    ...(audio ? ['-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=48000:d=${seconds}`] : []),
    ...['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p'],
    ...(audio ? ['-c:a', 'aac', '-b:a', '128k', '-shortest'] : []),
    ...(faststart ? ['-movflags', '+faststart'] : []),
    file,
  ]);
  return file;
}

/** The default clip without an audio track. */
export function silentClip(dir: string, options: ClipOptions = {}): Promise<string> {
  return h264Clip(dir, { ...options, audio: false });
}

/** The benchmark clip: 30 s 1920x1080 H.264 + AAC. */
export function benchmarkClip(dir: string): Promise<string> {
  return h264Clip(dir, { seconds: 30, width: 1920, height: 1080, name: 'bench-1080p-30s.mp4' });
}

/**
 * A phone-style clip: stored 1920x1080 landscape with a display matrix rotating it 90° counter-
 * clockwise for display (what `-display_rotation 90` writes on ffmpeg >= 6; on older ffmpeg
 * `-metadata:s:v:0 rotate=90` with `-c copy` writes the same matrix). The stored picture is red
 * on the left half, blue on the right, so turned upright the top is blue and the bottom red.
 */
export async function phoneClip(dir: string, seconds = 2): Promise<string> {
  const upright = path.join(dir, 'phone-unrotated.mp4');
  const file = path.join(dir, 'phone-rotated.mp4');
  const halves =
    `color=c=red:s=960x1080:r=30:d=${seconds}[l];color=c=blue:s=960x1080:r=30:d=${seconds}[r];[l][r]hstack=inputs=2[out0]`;
  await ffmpegRun([
    ...['-f', 'lavfi', '-i', halves],
    ...['-f', 'lavfi', '-i', `sine=frequency=660:sample_rate=48000:d=${seconds}`],
    ...['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest'],
    upright,
  ]);
  try {
    await ffmpegRun(['-display_rotation', '90', '-i', upright, '-c', 'copy', file]);
  } catch {
    await ffmpegRun(['-i', upright, '-c', 'copy', '-metadata:s:v:0', 'rotate=90', file]);
  }
  await rm(upright, { force: true });
  return file;
}

/** A portrait phone clip stored upright: 1080x1920, no rotation (what Android phones often write). */
export function portraitClip(dir: string, seconds = 1): Promise<string> {
  return h264Clip(dir, { seconds, width: 1080, height: 1920, audio: false, name: 'portrait-1080x1920.mp4' });
}

/**
 * HDR as an iPhone records it: 10-bit HEVC (x265), BT.2020 primaries and matrix, HLG
 * (`arib-std-b67`) or PQ (`smpte2084`) transfer. The picture is a grey ramp, signal 0 on the left
 * to full on the right (luma code linear in x), so a row of it shows the transfer curve.
 */
export async function hdrClip(dir: string, transfer: 'arib-std-b67' | 'smpte2084', options: { seconds?: number; width?: number; height?: number } = {}): Promise<string> {
  const { seconds = 1, width = 640, height = 360 } = options;
  const file = path.join(dir, `hdr-${transfer}-${width}x${height}.mp4`);
  await ffmpegRun([
    ...['-f', 'lavfi', '-i', `color=black:s=${width}x${height}:r=30:d=${seconds}`, '-vf', "format=gray,geq=lum='X*255/W',format=yuv420p10le"],
    ...['-c:v', 'libx265', '-preset', 'ultrafast', '-x265-params', 'log-level=error', '-tag:v', 'hvc1'],
    ...['-pix_fmt', 'yuv420p10le', '-color_primaries', 'bt2020', '-color_trc', transfer, '-colorspace', 'bt2020nc', '-color_range', 'tv', file],
  ]);
  return file;
}

/** SD colours: one flat green (32, 192, 64) coded with the BT.601 matrix and tagged so (smpte170m), as SD cameras and old phones write. */
export async function sdClip(dir: string): Promise<string> {
  const file = path.join(dir, 'sd-bt601.mp4');
  await ffmpegRun([
    ...['-f', 'lavfi', '-i', 'color=c=0x20C040:s=320x240:r=25:d=1', '-vf', 'scale=out_color_matrix=bt601:out_range=tv,format=yuv420p'],
    ...['-c:v', 'libx264', '-preset', 'ultrafast', '-colorspace', 'smpte170m', '-color_primaries', 'smpte170m', '-color_trc', 'smpte170m', file],
  ]);
  return file;
}

/**
 * Variable frame rate, as phones record in changing light: 1 s at 30 fps, then 1 s at 60 fps
 * (90 frames in 2 s), timestamps kept as they are (`-fps_mode passthrough`).
 */
export async function variableFrameRateClip(dir: string): Promise<string> {
  const file = path.join(dir, 'vfr-30-then-60.mp4');
  await ffmpegRun([
    ...['-f', 'lavfi', '-i', 'testsrc2=s=320x240:r=60:d=2', '-vf', "select='if(lt(t,1),not(mod(n,2)),1)'"],
    ...['-fps_mode', 'passthrough', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', file],
  ]);
  return file;
}

/** 1 s of 360x288 stored with 16:15 pixels (anamorphic, like PAL DV): displayed 384x288. */
export async function anamorphicClip(dir: string): Promise<string> {
  const file = path.join(dir, 'anamorphic.mp4');
  await ffmpegRun([
    ...['-f', 'lavfi', '-i', 'testsrc2=s=360x288:r=25:d=1', '-vf', 'setsar=16/15'],
    ...['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', file],
  ]);
  return file;
}

/** 1 s of 320x240 VP9 + Opus in WebM (the other container the server accepts). */
export async function webmClip(dir: string): Promise<string> {
  const file = path.join(dir, 'clip.webm');
  await ffmpegRun([
    ...['-f', 'lavfi', '-i', 'testsrc2=s=320x240:r=25:d=1', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:d=1'],
    ...['-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-cpu-used', '8', '-c:a', 'libopus', '-shortest', file],
  ]);
  return file;
}

/** A valid MP4's first 16 KiB (ftyp and the start of mdat; moov was at the end) + 16 KiB of noise. */
export async function corruptMp4(dir: string): Promise<string> {
  const source = await h264Clip(dir, { seconds: 2, width: 320, height: 240, name: 'corrupt-source.mp4' });
  const bytes = await readFile(source);
  const file = path.join(dir, 'corrupt.mp4');
  await writeFile(file, Buffer.concat([bytes.subarray(0, 16 * 1024), randomBytesOf(16 * 1024, 7)]));
  await rm(source, { force: true });
  return file;
}

/** A faststart MP4 (moov first) cut in half: it probes fine, half its samples are missing. */
export async function truncatedMp4(dir: string): Promise<string> {
  const source = await h264Clip(dir, { seconds: 3, width: 320, height: 240, faststart: true, name: 'truncated-source.mp4' });
  const bytes = await readFile(source);
  const file = path.join(dir, 'truncated.mp4');
  await writeFile(file, bytes.subarray(0, Math.floor(bytes.length / 2)));
  await rm(source, { force: true });
  return file;
}

/**
 * A zero-length video stream: a faststart MP4 cut right after its moov box. The track and all
 * its sample tables are there (ffprobe reports 2 s of H.264), no sample data is.
 */
export async function emptyStreamMp4(dir: string): Promise<string> {
  const source = await h264Clip(dir, { seconds: 2, width: 320, height: 240, audio: false, faststart: true, name: 'empty-stream-source.mp4' });
  const bytes = await readFile(source);
  const file = path.join(dir, 'empty-stream.mp4');
  await writeFile(file, bytes.subarray(0, mdatPayloadOffset(bytes)));
  await rm(source, { force: true });
  return file;
}

/** An MP4 written with zero video frames: a container with no streams at all. */
export async function noFramesMp4(dir: string): Promise<string> {
  const file = path.join(dir, 'no-frames.mp4');
  await ffmpegRun(['-f', 'lavfi', '-i', 'testsrc2=s=320x240:d=1', '-frames:v', '0', '-c:v', 'libx264', file]);
  return file;
}

export async function zeroLengthFile(dir: string): Promise<string> {
  const file = path.join(dir, 'zero-length.mp4');
  await writeFile(file, Buffer.alloc(0));
  return file;
}

/** 2 s of AAC in an M4A: a valid MP4 container without a video stream. */
export async function audioOnly(dir: string): Promise<string> {
  const file = path.join(dir, 'audio-only.m4a');
  await ffmpegRun(['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:d=2', '-c:a', 'aac', file]);
  return file;
}

export async function textFile(dir: string): Promise<string> {
  const file = path.join(dir, 'notes.txt');
  await writeFile(file, 'These are not the frames you are looking for.\n'.repeat(50));
  return file;
}

// ---------------------------------------------------------------------------------------------
// MP4 boxes

export interface Box {
  type: string;
  offset: number;
  size: number;
}

/** The top-level boxes ("atoms") of an MP4 file, in file order. */
export function topLevelBoxes(bytes: Buffer): Box[] {
  const boxes: Box[] = [];
  let offset = 0;
  while (offset + 8 <= bytes.length) {
    let size = bytes.readUInt32BE(offset);
    const type = bytes.toString('latin1', offset + 4, offset + 8);
    if (size === 1) size = Number(bytes.readBigUInt64BE(offset + 8));
    else if (size === 0) size = bytes.length - offset;
    if (size < 8) throw new Error(`bad box size ${size} for '${type}' at ${offset}`);
    boxes.push({ type, offset, size });
    offset += size;
  }
  return boxes;
}

function mdatPayloadOffset(bytes: Buffer): number {
  const mdat = topLevelBoxes(bytes).find((box) => box.type === 'mdat');
  if (!mdat) throw new Error('no mdat box');
  return mdat.offset + 8;
}
