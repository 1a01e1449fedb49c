// An outage under uploads, as the outage tests and `npm run bench:outage` play it: tus-js-client
// uploads in small chunks, the dependency taken away once every upload is under way and brought
// back after `outageMs`, and what the clients saw counted (creations per file above all).
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from './eventually.ts';
import { pdf } from './samples.ts';
import { minuteOfRetries, tusUpload } from './uploads.ts';

const MiB = 1024 * 1024;

export interface OutageDrillOptions {
  baseUrl: string;
  /** Names the files (`<prefix>-<i>.pdf`), to find their records. */
  prefix: string;
  files: number;
  fileSize: number;
  chunkSize: number;
  /** A pause before each request, so the uploads last long enough to meet the outage. */
  pauseMs: number;
  outageMs: number;
  takeAway(): Promise<unknown>;
  bringBack(): Promise<unknown>;
  /**
   * A client whose retries ran out tries again (as a user pressing "retry" would) this many
   * times, resuming its upload's URL; 0: its error fails the drill.
   */
  userRetries?: number;
}

export interface OutageDrillResult {
  data: Buffer[];
  urls: string[];
  /** Uploads created (POST answered 201) per file: 1 when no client started over. */
  creations: number[];
  /** Each answer the clients got, as "METHOD status", counted. */
  answers: Record<string, number>;
  sentBeforeOutage: number;
  /** Times a client's retries ran out and its user tried again. */
  userRetried: number;
}

export async function runOutageDrill(options: OutageDrillOptions): Promise<OutageDrillResult> {
  const data = Array.from({ length: options.files }, (_, i) => pdf(options.fileSize + i));
  const creations = data.map(() => 0);
  const sent = data.map(() => 0);
  const urls = data.map(() => '');
  const answers: Record<string, number> = {};
  let userRetried = 0;
  const upload = async (i: number): Promise<void> => {
    for (let retry = 0; ; retry++) {
      try {
        const done = await tusUpload(options.baseUrl, data[i]!, {
          filename: `${options.prefix}-${i}.pdf`,
          uploadUrl: urls[i] || undefined,
          chunkSize: options.chunkSize,
          retryDelays: minuteOfRetries,
          pauseBeforeEachRequestMs: options.pauseMs,
          onProgress: (bytes) => (sent[i] = bytes),
          onResponse: (method, status, location) => {
            if (method === 'POST' && status === 201) {
              creations[i]!++;
              urls[i] = location ?? '';
            }
            answers[`${method} ${status}`] = (answers[`${method} ${status}`] ?? 0) + 1;
          },
        });
        urls[i] = done.url;
        return;
      } catch (error) {
        if (retry >= (options.userRetries ?? 0)) throw error;
        userRetried++;
      }
    }
  };
  const uploads = Promise.all(data.map((_, i) => upload(i)));
  // In the middle: every upload has sent a MiB or more.
  await eventually('every upload under way', async () => sent.every((bytes) => bytes >= Math.min(MiB, options.fileSize / 4)), 120_000);
  const sentBeforeOutage = sent.reduce((a, b) => a + b);
  await options.takeAway();
  await sleep(options.outageMs);
  await options.bringBack();
  await uploads;
  return { data, urls, creations, answers, sentBeforeOutage, userRetried };
}

/** What a drill prints: the counts, without the files. */
export function drillFigures({ creations, answers, sentBeforeOutage, userRetried }: OutageDrillResult) {
  return { creationsPerFile: creations, answers, sentBeforeOutage, userRetried };
}
