import { spawn } from 'node:child_process';
import type { Children } from './childProcesses.ts';

/** How a child (ffprobe, ffmpeg) ended, and what it wrote. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Empty when `onStdout` took the output. */
  stdout: string;
  stderr: string;
}

/**
 * ffmpeg can log one decode error per packet of a damaged file: the first lines explain it, and
 * the last ones hold what it prints when done (loudnorm's measures).
 */
const STDERR_HEAD = 256 * 1024;
const STDERR_TAIL = 16 * 1024;

/**
 * Runs `command` as a child of the job (`children` kills and reaps it). Its stdout is handed to
 * `onStdout` as it comes (ffmpeg's raw samples), or collected as text; stderr is collected up to
 * a bound. Not being able to spawn it at all is ours to fix, so it rejects.
 */
export function runChild(children: Children, command: string, args: string[], onStdout?: (chunk: Buffer) => void): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let tail = '';
    if (onStdout) child.stdout.on('data', onStdout);
    else child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < STDERR_HEAD) stderr += chunk;
      else tail = (tail + chunk).slice(-STDERR_TAIL);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr: tail ? `${stderr}\n…\n${tail}` : stderr }));
    children.adopt(child);
  });
}
