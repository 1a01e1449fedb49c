// Memory of a whole process tree (the server and whatever it spawned: an embedded Postgres,
// its backends), read from /proc. PSS (smaps_rollup) charges each shared page to the processes
// mapping it in equal parts, so summing it over a tree counts Postgres's shared buffers and
// the binaries' pages once; summed VmRSS would count them once per backend.
import { readdirSync, readFileSync } from 'node:fs';

export interface TreeMemory {
  pssBytes: number;
  rssBytes: number;
  processes: number;
}

/** The pid and the pids of every living descendant of `root`, from each process's PPid. */
export function descendantsOf(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const ppid = Number(/^PPid:\s+(\d+)/m.exec(readOrEmpty(`/proc/${name}/status`))?.[1] ?? -1);
    children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
  }
  const tree: number[] = [];
  const visit = (pid: number) => {
    tree.push(pid);
    for (const child of children.get(pid) ?? []) visit(child);
  };
  visit(root);
  return tree;
}

/** PSS and RSS summed over `root` and its descendants; a process gone mid-read counts 0. */
export function treeMemory(root: number): TreeMemory {
  let pssBytes = 0;
  let rssBytes = 0;
  let processes = 0;
  for (const pid of descendantsOf(root)) {
    const rollup = readOrEmpty(`/proc/${pid}/smaps_rollup`);
    if (!rollup) continue;
    processes++;
    pssBytes += kB(rollup, 'Pss');
    rssBytes += kB(rollup, 'Rss');
  }
  return { pssBytes, rssBytes, processes };
}

const kB = (text: string, key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;

function readOrEmpty(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Samples the tree of `root` every `intervalMs` until `stop()`: the peak and the last sample. */
export function watchTree(root: () => number | undefined, intervalMs = 100): { stop(): { peak: TreeMemory; last: TreeMemory } } {
  const empty: TreeMemory = { pssBytes: 0, rssBytes: 0, processes: 0 };
  let peak = empty;
  let last = empty;
  const sample = () => {
    const pid = root();
    if (pid === undefined) return;
    last = treeMemory(pid);
    if (last.pssBytes > peak.pssBytes) peak = last;
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return { peak, last };
    },
  };
}
