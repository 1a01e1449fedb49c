// `npm exec -- node test/bench/layers.ts`: where the real server's upload time goes. One 1 GiB PATCH
// per run against, in turn:
//   bare pipe    the bench baseline: request piped into fs.createWriteStream
//   bare store   + @tus/file-store's counting Transform
//   bare web     + Readable.toWeb(req) (srvx) and Readable.fromWeb (@tus/server)
//   bare tus     + @tus/server's PassThrough proxy, 'data' listener and StreamLimiter
//   server       the real server (Koa, @tus/server, FileStore, embedded Postgres), same node:http client
//   server+flag  the same with `node --initial-old-space-size=128` (see the README's benchmark notes)
// Each row: throughput, the CPU the server process used per GiB (user + system, all threads;
// on this noisy 2-core machine steadier than the throughput) and its full GCs per GiB.
//
// Settings: BENCH_REPEAT (default 3), BENCH_SCALE (default 1: 1 GiB), BENCH_CPU_PROF=1,
// BENCH_SERVER_NODE_ARGS (extra node flags for the `server` row).
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { plainUpload } from './clients.ts';
import { baseEnv, fmt, GiB, median, positiveInt, serverEnv, settleDisk, writeSource } from './common.ts';
import { sleep, startChild, watchProcess, type ChildServer } from './processes.ts';
import { reachableTempDir } from '../support/reachableTempDir.ts';

interface Variant {
  name: string;
  start(dir: string, nodeArgs: string[]): Promise<ChildServer>;
  upload(child: ChildServer, slice: { file: string; start: number; length: number }): Promise<string>;
  clean(child: ChildServer, dir: string, url: string): Promise<void>;
}

const repeat = positiveInt('BENCH_REPEAT', 3);
const size = GiB / positiveInt('BENCH_SCALE', 1);

const removeAll = async (dir: string) => {
  for (const name of await fs.readdir(dir)) await fs.rm(path.join(dir, name), { force: true });
};
const deleteUpload = async (child: ChildServer, url: string) => {
  const res = await fetch(`${child.url}/api/uploads/${url.split('/').pop()}`, { method: 'DELETE' });
  await res.arrayBuffer();
  if (!res.ok) throw new Error(`DELETE ${url}: ${res.status}`);
};
const bare = (chain: string): Variant => ({
  name: `bare ${chain}`,
  start: (dir, nodeArgs) => startChild(`bare-${chain}`, 'test/bench/bareServer.ts', { ...baseEnv(), BARE_DIR: dir, BARE_CHAIN: chain }, nodeArgs),
  upload: (child, slice) => plainUpload(child.url, slice),
  clean: (_child, dir) => removeAll(dir),
});
const serverArgs = process.env.BENCH_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
const server = (name: string, args: string[]): Variant => ({
  name,
  // RUN_JOBS=false: no inspect job reading the file back while the next run is timed.
  start: (dir, nodeArgs) => startChild(name, 'server/main/server.ts', { ...serverEnv(dir), RUN_JOBS: 'false' }, [...args, ...nodeArgs]),
  // The same node:http client as the bare rows (run.ts measures tus-js-client).
  upload: (child, slice) => plainUpload(child.url, slice, 'layers.bin'),
  clean: (child, _dir, url) => deleteUpload(child, url),
});
const variants: Variant[] = [
  bare('pipe'),
  bare('store'),
  bare('web'),
  bare('tus'),
  server('server', serverArgs),
  server('server+flag', ['--initial-old-space-size=128']),
];

const tempRoot = await reachableTempDir('tus-layers-');
const profileDir = process.env.BENCH_CPU_PROF ? await fs.mkdtemp(path.join(os.tmpdir(), 'tus-layers-profiles-')) : undefined;
const children: ChildServer[] = [];
try {
  const source = path.join(tempRoot, 'source.bin');
  await writeSource(source, size);
  console.log(`layers — ${fmt(size / GiB, 2)} GiB per run, ${repeat} round(s), node ${process.version}, ${os.availableParallelism()} CPUs`);
  for (const [i, v] of variants.entries()) {
    const dir = path.join(tempRoot, `v${i}`);
    await fs.mkdir(dir);
    const nodeArgs = ['--trace-gc', ...(profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-name', `${v.name.replace(/\W/g, '-')}.cpuprofile`] : [])];
    children.push(await v.start(dir, nodeArgs));
  }
  const results = variants.map(() => ({ mbps: [] as number[], cpu: [] as number[], client: [] as number[], gcs: [] as number[] }));
  for (let round = 1; round <= repeat; round++) {
    const order = round % 2 === 1 ? variants.map((_, i) => i) : variants.map((_, i) => i).reverse();
    for (const i of order) {
      const v = variants[i]!;
      const child = children[i]!;
      await settleDisk();
      const gc0 = child.gcCount().markCompacts;
      const watch = watchProcess(child.pid);
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const url = await v.upload(child, { file: source, start: 0, length: size });
      const seconds = (performance.now() - t0) / 1000;
      const clientCpu = process.cpuUsage(cpu0);
      const w = watch.stop();
      await sleep(100); // the last --trace-gc lines
      const gcs = child.gcCount().markCompacts - gc0;
      await v.clean(child, path.join(tempRoot, `v${i}`), url);
      const r = results[i]!;
      r.mbps.push(size / 1e6 / seconds);
      r.cpu.push(w.cpuSeconds / (size / GiB));
      r.client.push((clientCpu.user + clientCpu.system) / 1e6 / (size / GiB));
      r.gcs.push(gcs / (size / GiB));
      console.log(
        `  round ${round} ${v.name.padEnd(12)} ${fmt(size / 1e6 / seconds, 0).padStart(5)} MB/s  server CPU ${fmt(w.cpuSeconds, 2)} s  ` +
          `peak RSS ${fmt(w.peakRssBytes / 2 ** 20, 0)} MiB  full GCs ${gcs}`,
      );
    }
  }
  const base = median(results[0]!.cpu);
  console.log(`\n| variant | MB/s (median) | server CPU s/GiB | Δ CPU vs bare pipe | full GCs/GiB | client CPU s/GiB |`);
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const [i, v] of variants.entries()) {
    const r = results[i]!;
    const cpu = median(r.cpu);
    const delta = cpu - base;
    console.log(
      `| ${v.name} | ${fmt(median(r.mbps), 0)} | ${fmt(cpu, 2)} | ${i === 0 ? '—' : `${delta >= 0 ? '+' : ''}${fmt(delta, 2)}`} | ${fmt(median(r.gcs), 0)} | ${fmt(median(r.client), 2)} |`,
    );
  }
} catch (error) {
  console.error('\nlayers failed:', error);
  for (const child of children) console.error(`--- last output of ${child.name} ---\n${child.output()}`);
  process.exitCode = 1;
} finally {
  await Promise.all(children.map((c) => c.stop().catch(() => undefined)));
  await fs.rm(tempRoot, { recursive: true, force: true });
  if (profileDir) console.log(`\nCPU profiles: ${profileDir}`);
}
