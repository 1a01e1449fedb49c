// One round of a checkout's media bench (its own test/bench/media.ts, run in that checkout),
// for compare.ts: appends {"image": ratio, "video": ratio} as a JSON line to the file it names.
//   cd <checkout> && node --initial-old-space-size=128 --expose-gc [<its npm start's --import preloads>] <this file> <checkout> <out.jsonl>
import fs from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { MediaBenchResult } from './media.ts';

const [checkout, out] = process.argv.slice(2);
if (!checkout || !out) throw new Error('usage: mediaRatios.ts <checkout> <out.jsonl>');
const media = (await import(pathToFileURL(path.join(path.resolve(checkout), 'test/bench/media.ts')).href)) as { runMediaBench(): Promise<MediaBenchResult> };
const result = await media.runMediaBench();
await fs.appendFile(out, `${JSON.stringify({ image: result.images?.ratio, video: result.video?.ratio })}\n`);
process.exit(0);
