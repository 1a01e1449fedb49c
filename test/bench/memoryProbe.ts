// Preloaded into the soak's server (`--import`, with SOAK_PROBE_DIR set): every thread of the
// process (the main one and each piscina worker) writes its process.memoryUsage() and V8 heap
// figures to `<dir>/<threadId>.json` every few seconds, so the soak can sample what its /metrics
// does not show: the worker threads' heaps and the Buffers/ArrayBuffers outside the V8 heap.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import { isMainThread, threadId } from 'node:worker_threads';

const dir = process.env.SOAK_PROBE_DIR;
if (dir) {
  const write = () => {
    const m = process.memoryUsage();
    const h = v8.getHeapStatistics();
    const figures = { main: isMainThread, at: Date.now(), heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, mallocedMemory: h.malloced_memory };
    try {
      writeFileSync(path.join(dir, `${threadId}.json`), JSON.stringify(figures));
    } catch {
      // The soak removed its folder: nothing to report to.
    }
  };
  write();
  setInterval(write, 5_000).unref();
}
