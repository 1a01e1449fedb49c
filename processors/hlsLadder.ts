import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Size } from './encoderPresets.ts';
import { entryFiles } from './outputFiles.ts';

/**
 * The `hls` output: which renditions a video gets, how each is muxed, and the master playlist
 * that lists them. The encodes themselves run in the video job's one ffmpeg run (videoJob.ts).
 */

/** One rung of the ladder: the picture's short side in pixels and the bit rate no stretch of it may pass. */
export interface Rung {
  shortSide: number;
  maxrate: number;
}

export interface HlsSettings {
  ladder: Rung[];
  segmentSeconds: number;
}

/** A rendition to encode: its name (`720p`), the rung it follows, and its place in the ladder (0 = top). */
export interface Rendition {
  name: string;
  shortSide: number;
  maxrate: number;
  top: boolean;
}

const MASTER_PLAYLIST = entryFiles.hls!;

/**
 * The renditions of a picture of `size` (as displayed, after the box): the top one at the picture's
 * own size, with the cap of the smallest rung that is not below it, then every rung strictly below
 * it. Never above the source: a 720p clip gets 720p, 480p, 360p.
 */
export function renditionsFor(size: Size, box: Size, ladder: Rung[]): Rendition[] {
  const fitted = Math.min(size.width, size.height, box.width, box.height);
  const top = fitted - (fitted % 2);
  const sorted = [...ladder].sort((a, b) => b.shortSide - a.shortSide);
  const topCap = sorted.filter((rung) => rung.shortSide >= top).at(-1)?.maxrate ?? sorted[0]!.maxrate;
  return [
    { name: `${top}p`, shortSide: top, maxrate: topCap, top: true },
    ...sorted.filter((rung) => rung.shortSide < top).map((rung) => ({ name: `${rung.shortSide}p`, shortSide: rung.shortSide, maxrate: rung.maxrate, top: false })),
  ];
}

/** The scale a lower rung adds to the shared picture chain: the short side set, the long one following with an even size. */
export function rungScale(rendition: Rendition, portrait: boolean): string {
  return portrait ? `scale=w=${rendition.shortSide}:h=-2` : `scale=w=-2:h=${rendition.shortSide}`;
}

/**
 * The hls muxer's options for one rendition, as `key=value` pairs (for `-key value` on the
 * command line, or inside a tee muxer's brackets): fMP4 (CMAF) segments named after the
 * rendition, a VOD playlist. Segments cut at the first keyframe at or after each multiple of
 * the segment length, and every rendition forces one there (`keyframesEvery`): all of them cut
 * at the same frames, so a player can switch at any segment boundary.
 */
export function hlsMuxerOptions(dir: string, rendition: Rendition, settings: HlsSettings): Array<[string, string]> {
  return [
    ['hls_time', String(settings.segmentSeconds)],
    ['hls_playlist_type', 'vod'],
    ['hls_segment_type', 'fmp4'],
    ['hls_fmp4_init_filename', path.basename(initOf(dir, rendition))],
    ['hls_segment_filename', path.join(dir, `${rendition.name}_%03d.m4s`)],
    ['hls_flags', 'independent_segments'],
  ];
}

/** ffmpeg's `-force_key_frames` for every rendition: a keyframe on the first frame at or past each segment boundary. */
export function keyframesEvery(settings: HlsSettings): string {
  return `expr:gte(t,n_forced*${settings.segmentSeconds})`;
}

export function playlistOf(dir: string, rendition: Rendition): string {
  return path.join(dir, `${rendition.name}.m3u8`);
}

/** What the master playlist says of a rendition, read back from what ffmpeg wrote. */
export interface RenditionFacts {
  rendition: Rendition;
  width: number;
  height: number;
  hasAudio: boolean;
  frameRate: number | null;
}

/**
 * Writes master.m3u8 and returns every file of the output (the master first) with the total size. BANDWIDTH is
 * the peak bit rate of any segment and AVERAGE-BANDWIDTH the whole rendition's, as RFC 8216
 * defines them, measured on the segments written.
 */
export async function writeMasterPlaylist(dir: string, renditions: RenditionFacts[]): Promise<{ files: string[]; size: number; bytesByRendition: Record<string, number> }> {
  const lines = ['#EXTM3U', '#EXT-X-VERSION:7', '#EXT-X-INDEPENDENT-SEGMENTS'];
  const bytesByRendition: Record<string, number> = {};
  for (const facts of renditions) {
    const { segments, bytes } = await segmentsOf(dir, facts.rendition);
    bytesByRendition[facts.rendition.name] = bytes;
    const seconds = segments.reduce((sum, s) => sum + s.seconds, 0);
    const peak = Math.max(...segments.map((s) => (s.bytes * 8) / Math.max(s.seconds, 0.001)));
    const average = seconds > 0 ? (bytes * 8) / seconds : peak;
    const codecs = [await avcCodecOf(initOf(dir, facts.rendition)), ...(facts.hasAudio ? ['mp4a.40.2'] : [])].join(',');
    const attributes = [
      `BANDWIDTH=${Math.ceil(peak)}`,
      `AVERAGE-BANDWIDTH=${Math.ceil(average)}`,
      `CODECS="${codecs}"`,
      `RESOLUTION=${facts.width}x${facts.height}`,
      ...(facts.frameRate ? [`FRAME-RATE=${facts.frameRate.toFixed(3)}`] : []),
    ];
    lines.push(`#EXT-X-STREAM-INF:${attributes.join(',')}`, `${facts.rendition.name}.m3u8`);
  }
  await writeFile(path.join(dir, MASTER_PLAYLIST), `${lines.join('\n')}\n`);
  const files = [MASTER_PLAYLIST, ...(await readdir(dir)).filter((file) => file !== MASTER_PLAYLIST).sort()];
  const sizes = await Promise.all(files.map(async (file) => (await stat(path.join(dir, file))).size));
  return { files, size: sizes.reduce((a, b) => a + b, 0), bytesByRendition };
}

/** Each media segment's duration (its `#EXTINF`) and size, and the rendition's bytes (init included). */
async function segmentsOf(dir: string, rendition: Rendition): Promise<{ segments: { seconds: number; bytes: number }[]; bytes: number }> {
  const playlist = await readFile(playlistOf(dir, rendition), 'utf8');
  const segments: { seconds: number; bytes: number }[] = [];
  let seconds: number | undefined;
  for (const line of playlist.split('\n')) {
    const extinf = /^#EXTINF:([\d.]+)/.exec(line);
    if (extinf) seconds = Number(extinf[1]);
    else if (seconds !== undefined && line.trim() !== '' && !line.startsWith('#')) {
      segments.push({ seconds, bytes: (await stat(path.join(dir, line.trim()))).size });
      seconds = undefined;
    }
  }
  const init = (await stat(initOf(dir, rendition))).size;
  return { segments, bytes: init + segments.reduce((sum, s) => sum + s.bytes, 0) };
}

export function initOf(dir: string, rendition: Rendition): string {
  return path.join(dir, `${rendition.name}_init.mp4`);
}

/**
 * RFC 6381's `avc1.PPCCLL`: profile, constraint flags and level, the three bytes after the
 * version in the init segment's `avcC` box (what the decoder itself is configured with).
 */
async function avcCodecOf(init: string): Promise<string> {
  const bytes = await readFile(init);
  const at = bytes.indexOf('avcC');
  if (at < 0 || at + 8 > bytes.length) throw new Error(`${path.basename(init)} has no avcC box`);
  return `avc1.${bytes.subarray(at + 5, at + 8).toString('hex')}`;
}
