// Memory of a whole process tree (the server and whatever it spawned: an embedded Postgres,
// its backends), read from /proc, three ways:
//  - footprint: every process's private pages, plus each shared mapping once for the tree (the
//    largest resident size any process of the tree has of it). What the tree would cost on a
//    machine of its own: Postgres's shared buffers and binaries once, node's binary in full.
//  - PSS (smaps_rollup): shared pages split between ALL processes mapping them, also outside
//    the tree: node's ~34 MB binary is cheap in PSS on a machine running other node processes.
//  - RSS summed: shared pages once per process (Postgres's buffers once per backend).
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface TreeMemory {
  footprintBytes: number;
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
  let privateBytes = 0;
  let processes = 0;
  const shared = new Map<string, number>();
  for (const pid of descendantsOf(root)) {
    const rollup = readOrEmpty(`/proc/${pid}/smaps_rollup`);
    if (!rollup) continue;
    processes++;
    pssBytes += kB(rollup, 'Pss');
    rssBytes += kB(rollup, 'Rss');
    const exe = readLinkOrEmpty(`/proc/${pid}/exe`);
    for (const mapping of readOrEmpty(`/proc/${pid}/smaps`).split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)) {
      privateBytes += kB(mapping, 'Private_Clean') + kB(mapping, 'Private_Dirty');
      const sharedBytes = kB(mapping, 'Shared_Clean') + kB(mapping, 'Shared_Dirty');
      if (sharedBytes === 0) continue;
      // A file by name and offset; anything else by address, which forked children inherit.
      const [range, , offset, , , name] = mapping.split('\n', 1)[0]!.split(/\s+/);
      const key = name?.startsWith('/') ? `${name}@${offset}` : `${exe}@${range}`;
      shared.set(key, Math.max(shared.get(key) ?? 0, sharedBytes));
    }
  }
  const footprintBytes = privateBytes + [...shared.values()].reduce((a, b) => a + b, 0);
  return { footprintBytes, pssBytes, rssBytes, processes };
}

function readLinkOrEmpty(link: string): string {
  try {
    return readlinkSync(link);
  } catch {
    return '';
  }
}

const kB = (text: string, key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;

function readOrEmpty(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/**
 * Samples the tree of `root` every `intervalMs` until `stop()`: the peak and the last sample.
 * Not more often: reading smaps takes each process's mmap lock and slows the server down.
 */
export function watchTree(root: () => number | undefined, intervalMs = 500): { stop(): { peak: TreeMemory; last: TreeMemory } } {
  const empty: TreeMemory = { footprintBytes: 0, pssBytes: 0, rssBytes: 0, processes: 0 };
  let peak = empty;
  let last = empty;
  const sample = () => {
    const pid = root();
    if (pid === undefined) return;
    last = treeMemory(pid);
    if (last.footprintBytes > peak.footprintBytes) peak = last;
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
