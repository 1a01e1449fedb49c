import sharp from 'sharp';
import { audioJob } from './audioJob.ts';
import { imageJob } from './imageJob.ts';
import type { MediaOutcome, MediaTask } from './mediaTasks.ts';
import { thumbhashOf } from './thumbhash.ts';
import { videoJob } from './videoJob.ts';

// Every job reads a new file once: libvips' operation cache could only ever hit on a stale
// entry, and it keeps up to 50 MB of pixels per process.
sharp.cache(false);

/** The piscina worker entry: one task, one processor, run on this worker thread. */
export default async function runMediaTask(task: MediaTask): Promise<MediaOutcome> {
  if (task.kind === 'audio') return audioJob(task);
  return withThumbhash(await (task.kind === 'image' ? imageJob(task) : videoJob(task)));
}

/** Every picture's placeholder, from the thumbnail its processor made (an image's, a poster's). */
async function withThumbhash(outcome: MediaOutcome): Promise<MediaOutcome> {
  const thumbnail = outcome.ok ? outcome.outputs.find((o) => o.name === 'thumbnail') : undefined;
  if (!outcome.ok || !thumbnail) return outcome;
  return { ...outcome, media: { ...outcome.media, thumbhash: await thumbhashOf(thumbnail.path) } };
}
