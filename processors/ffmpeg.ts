import type { ChildProcess } from 'node:child_process';
import type { FfmpegCommand } from 'fluent-ffmpeg';
import type { Children } from './childProcesses.ts';

/** Running one fluent-ffmpeg command as a child of a video job, and ffmpeg's/ffprobe's stderr in few words. */

export interface FfmpegResult {
  /** Set when ffmpeg failed (fluent-ffmpeg's error). */
  error?: Error;
  /** ffmpeg could not be started, or it died of a signal we did not send. */
  unexpected: boolean;
  /** ffmpeg's stderr without the progress lines (the first 200 lines). */
  stderr: string;
}

/** The child fluent-ffmpeg spawned; the property exists but is not in its type declarations. */
type WithProcess = { ffmpegProc?: ChildProcess };

export function runFfmpeg(children: Children, command: FfmpegCommand, onLine?: (line: string) => void): Promise<FfmpegResult> {
  return new Promise((resolve) => {
    const lines: string[] = [];
    let spawned = false;
    command.on('start', () => {
      spawned = true;
      const child = (command as unknown as WithProcess).ffmpegProc;
      if (child) children.adopt(child);
    });
    command.on('stderr', (line: string) => {
      onLine?.(line);
      // Keep what explains a failure, not the progress lines; a damaged file can log the same
      // decode error thousands of times, so only the first lines are kept.
      if (!STATS_LINE.test(line) && lines.length < 200) lines.push(line);
    });
    command.on('error', (error: Error) => {
      const killedByUs = children.closed;
      resolve({ error, unexpected: !spawned || (/killed with signal/.test(error.message) && !killedByUs), stderr: lines.join('\n') });
    });
    command.on('end', () => resolve({ unexpected: false, stderr: lines.join('\n') }));
    command.run();
  });
}

// ---------------------------------------------------------------------------------------------
// Words

/** ffmpeg's `-stats` progress lines. */
const STATS_LINE = /^\s*(frame|size)=/;

/**
 * ffmpeg's/ffprobe's own error lines, trimmed: no progress lines, no `[mov,mp4,… @ 0x55…]`
 * prefixes, server paths replaced, repeats dropped, at most 4 lines and 400 characters.
 */
export function ffmpegWords(stderr: string, replacements: Array<[string, string]> = []): string {
  const seen = new Set<string>();
  for (let line of stderr.split(/\r\n|\r|\n/)) {
    line = line.trim();
    if (line === '' || STATS_LINE.test(line) || /^Conversion failed!?$/.test(line)) continue;
    line = line.replace(/^\[[^\]]* @ 0x[0-9a-f]+\]\s*/i, '');
    for (const [from, to] of replacements) line = line.split(`file:${from}`).join(to).split(from).join(to);
    seen.add(line);
    if (seen.size >= 4) break;
  }
  const text = [...seen].join('; ');
  return text.length > 400 ? `${text.slice(0, 399)}…` : text;
}
