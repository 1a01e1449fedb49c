import type { Children } from './childProcesses.ts';
import { runChild, type Exit } from './runChild.ts';

/** ffprobe for the video job: run it on a file (JSON out), and what its answer says about the input. */

/** Demuxers ffmpeg and ffprobe may use: the container types the server accepts for video (mp4/mov, webm). */
export const VIDEO_DEMUXERS = 'mov,matroska,webm';

const FFPROBE = process.env.FFPROBE_PATH || 'ffprobe';

// ---------------------------------------------------------------------------------------------
// Running ffprobe

export function describeExit(exit: { code: number | null; signal: NodeJS.Signals | null }): string {
  return exit.signal !== null ? `signal ${exit.signal}` : `code ${exit.code}`;
}

/** Demuxers for the audio job: the video containers (m4a is mp4, a voice note WebM) and mp3, wav, ogg. */
export const AUDIO_DEMUXERS = `${VIDEO_DEMUXERS},mp3,wav,ogg`;

export function runFfprobe(children: Children, file: string, demuxers = VIDEO_DEMUXERS): Promise<Exit> {
  return runChild(children, FFPROBE, [
    ...['-hide_banner', '-v', 'error', '-protocol_whitelist', 'file', '-format_whitelist', demuxers],
    ...['-print_format', 'json', '-show_format', '-show_streams', '-i', `file:${file}`],
  ]);
}

// ---------------------------------------------------------------------------------------------
// ffprobe JSON (only what we read)

interface ProbeSideData {
  side_data_type?: string;
  rotation?: number;
}
export interface ProbeStream {
  index: number;
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  sample_aspect_ratio?: string;
  pix_fmt?: string;
  color_transfer?: string;
  color_primaries?: string;
  color_space?: string;
  color_range?: string;
  avg_frame_rate?: string;
  r_frame_rate?: string;
  duration?: string;
  channels?: number;
  sample_rate?: string;
  disposition?: Record<string, number>;
  tags?: Record<string, string>;
  side_data_list?: ProbeSideData[];
}
export interface ProbeFormat {
  format_name?: string;
  duration?: string;
  bit_rate?: string;
  tags?: Record<string, string>;
}
export interface Probe {
  streams: ProbeStream[];
  format: ProbeFormat;
}

/** What the job learnt about the input. */
export interface VideoMedia {
  [key: string]: unknown;
  /** Seconds (the container's duration, else the video stream's). */
  duration: number | null;
  /** As displayed: after rotation, and with non-square pixels (anamorphic video) made square. */
  width: number;
  height: number;
  /**
   * Degrees the stored picture is turned clockwise for display (0, 90, 180, 270): the legacy
   * `rotate` tag's convention. From the display matrix (whose angle, as ffprobe prints it, is
   * counter-clockwise: an upright iPhone portrait video shows -90 there and 90 here) or the tag.
   */
  rotation: number;
  videoCodec: string | null;
  audioCodec: string | null;
  /** Overall bit rate, bit/s. */
  bitrate: number | null;
  frameRate: number | null;
  hasAudio: boolean;
  /** `hlg` (an iPhone's default) or `pq` (HDR10, Dolby Vision's base layer) for HDR video, tone-mapped to SDR in the mp4; else null. */
  hdr: 'hlg' | 'pq' | null;
  /** ffprobe's demuxer name, e.g. `mov,mp4,m4a,3gp,3g2,mj2` or `matroska,webm`. */
  container: string | null;
  creationTime: string | null;
}

// ---------------------------------------------------------------------------------------------
// Metadata

export function parseProbe(json: string): Probe {
  const parsed = JSON.parse(json) as Partial<Probe>;
  return { streams: parsed.streams ?? [], format: parsed.format ?? {} };
}

export function describeMedia(probe: Probe, video: ProbeStream, audio: ProbeStream | undefined): VideoMedia {
  const rotation = rotationOf(video);
  const sar = ratio(video.sample_aspect_ratio);
  let width = video.width ?? 0;
  let height = video.height ?? 0;
  if (sar !== null && sar > 0 && sar !== 1) {
    if (sar > 1) width = Math.round(width * sar);
    else height = Math.round(height / sar);
  }
  if (rotation === 90 || rotation === 270) [width, height] = [height, width];
  const frameRate = ratio(video.avg_frame_rate) || ratio(video.r_frame_rate);
  return {
    duration: numberOr(probe.format.duration, numberOr(video.duration, null)),
    width,
    height,
    rotation,
    videoCodec: video.codec_name ?? null,
    audioCodec: audio?.codec_name ?? null,
    bitrate: numberOr(probe.format.bit_rate, null),
    frameRate: frameRate ? Math.round(frameRate * 1000) / 1000 : null,
    hasAudio: audio !== undefined,
    hdr: video.color_transfer === 'arib-std-b67' ? 'hlg' : video.color_transfer === 'smpte2084' ? 'pq' : null,
    container: probe.format.format_name ?? null,
    creationTime: probe.format.tags?.creation_time ?? video.tags?.creation_time ?? null,
  };
}

/** Clockwise degrees, 0/90/180/270 (see `VideoMedia.rotation`). */
export function rotationOf(stream: Pick<ProbeStream, 'side_data_list' | 'tags'>): number {
  const matrix = stream.side_data_list?.find((d) => d.side_data_type === 'Display Matrix' && typeof d.rotation === 'number');
  const clockwise = matrix?.rotation !== undefined ? -matrix.rotation : Number(stream.tags?.rotate ?? 0);
  if (!Number.isFinite(clockwise)) return 0;
  return (((Math.round(clockwise / 90) * 90) % 360) + 360) % 360;
}

function ratio(text: string | undefined): number | null {
  if (!text) return null;
  const [num, den] = text.split(/[/:]/).map(Number);
  if (num === undefined || !Number.isFinite(num)) return null;
  if (den === undefined) return num;
  return Number.isFinite(den) && den !== 0 ? num / den : null;
}

export function numberOr<T>(text: string | undefined, fallback: T): number | T {
  if (text === undefined || text === 'N/A') return fallback;
  const value = Number(text);
  return Number.isFinite(value) ? value : fallback;
}
