import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';

/** What the media jobs' child processes left behind: live ones by command line, and zombies. */

/** Live (not zombie) processes whose command line contains `text`. */
export async function liveProcessesWith(text: string): Promise<string[]> {
  const pattern = text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  let pids: string[];
  try {
    const { stdout } = await promisify(execFile)('pgrep', ['-f', '--', pattern]);
    pids = stdout.split('\n').filter(Boolean);
  } catch (err) {
    if ((err as { code?: number }).code === 1) return []; // pgrep: nothing matched
    throw err;
  }
  const live: string[] = [];
  for (const pid of pids) {
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ');
      if (state !== 'Z' && !cmdline.includes('pgrep')) live.push(`${pid} ${state} ${cmdline}`);
    } catch {
      // gone meanwhile
    }
  }
  return live;
}

/** Children of this process that are zombies (killed after their thread was gone). */
export async function zombieChildren(): Promise<string[]> {
  const { stdout } = await promisify(execFile)('ps', ['-o', 'pid=,stat=,comm=', '--ppid', String(process.pid)]).catch(() => ({ stdout: '' }));
  return stdout.split('\n').filter((line) => /\sZ/.test(line));
}
