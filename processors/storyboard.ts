import { writeFile } from 'node:fs/promises';
import type { Size } from './encoderPresets.ts';
import { entryFiles } from './outputFiles.ts';

/**
 * The `storyboard` output: one sprite of evenly spaced frames and a WebVTT file whose cues point
 * into it with `#xywh=` (what players and Mux use for scrubbing previews). The frames come from the
 * video job's one decode: a branch of its filter graph picks them (`fps`), shrinks them and tiles them.
 */

/** Clips this long or shorter get no storyboard: there is little to scrub. */
export const STORYBOARD_MIN_SECONDS = 10;
const MAX_TILES = 100;
const TILE_WIDTH = 160;
const COLUMNS = 10;
export const SPRITE_FILE = 'sprite.jpg';
export const STORYBOARD_FILE = entryFiles.storyboard!;

export interface StoryboardPlan {
  /** Seconds between two tiles. */
  interval: number;
  /** Tiles the cues use: the frames at 0, interval, 2 × interval, … before the end. */
  tiles: number;
  tile: Size;
  columns: number;
  rows: number;
}

/** One tile a second, or fewer for long clips (at most 100); tiles as wide as 160 px, height after the picture. */
export function planStoryboard(duration: number, picture: Size): StoryboardPlan {
  const interval = Math.max(1, duration / MAX_TILES);
  const tiles = Math.ceil(duration / interval);
  const height = Math.max(2, 2 * Math.round((TILE_WIDTH * picture.height) / picture.width / 2));
  // Room for one frame more than the cues use: `fps` may emit a last frame at the very end, and
  // the tile filter would start a second sprite for it.
  const capacity = tiles + 1;
  const columns = Math.min(COLUMNS, capacity);
  return { interval, tiles, tile: { width: TILE_WIDTH, height }, columns, rows: Math.ceil(capacity / columns) };
}

/**
 * The filter graph branch making the sprite from the shared (upright, BT.709) picture: frames at
 * each interval, shrunk, converted to full-range RGB as the poster is (swscale would read BT.709
 * as BT.601 otherwise), tiled. The tile filter writes the partly filled sprite at the end.
 */
export function storyboardFilter(plan: StoryboardPlan): string {
  return [
    `fps=fps=1/${plan.interval.toFixed(6)}:round=down`,
    `scale=w=${plan.tile.width}:h=${plan.tile.height}:in_color_matrix=bt709:in_range=tv:out_range=pc`,
    'format=rgb24',
    `tile=layout=${plan.columns}x${plan.rows}`,
  ].join(',');
}

/** The WebVTT file: one cue per tile, the last one ending at the clip's end. */
export async function writeStoryboardVtt(file: string, plan: StoryboardPlan, duration: number): Promise<void> {
  const cues = ['WEBVTT', ''];
  for (let i = 0; i < plan.tiles; i++) {
    const start = i * plan.interval;
    const end = i === plan.tiles - 1 ? duration : Math.min(duration, (i + 1) * plan.interval);
    const x = (i % plan.columns) * plan.tile.width;
    const y = Math.floor(i / plan.columns) * plan.tile.height;
    cues.push(`${vttTime(start)} --> ${vttTime(end)}`, `${SPRITE_FILE}#xywh=${x},${y},${plan.tile.width},${plan.tile.height}`, '');
  }
  await writeFile(file, cues.join('\n'));
}

function vttTime(seconds: number): string {
  const ms = Math.round(seconds * 1000);
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = Math.floor((ms % 60_000) / 1000);
  return `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}.${String(ms % 1000).padStart(3, '0')}`;
}
