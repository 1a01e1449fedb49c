import type { ServerResponse } from 'node:http';
import type { Db } from '../infra/db/database.ts';
import { findUpload } from '../infra/db/records.ts';
import type { Upload, UploadEventRow, UploadStatus } from '../infra/db/schema.ts';
import { listEventsAfter, type UploadProgress } from '../infra/db/uploadEventLog.ts';
import { uploadStatusFacts } from '../infra/db/uploadStatusFacts.ts';
import type { UploadEventHub } from './uploadEventHub.ts';
import type { Logger } from '../infra/settings/log.ts';

/** Events read from the log at a time: what a stream holds at most, however far behind its client is. */
const eventBatch = 50;

export interface EventStreamOptions {
  db: Db;
  hub: UploadEventHub;
  /** The upload, its owner already checked. */
  uploadId: string;
  /** Resume after this event (`Last-Event-ID`); undefined: start with the status now. */
  lastEventId: number | undefined;
  /** The status JSON of GET /api/uploads/:id for the upload as it is now. */
  statusJson(upload: Upload): Promise<object>;
  heartbeatMs: number;
  progressIntervalMs: number;
  log: Logger;
}

/**
 * A Server-Sent Events stream of one upload (WHATWG HTML, "Server-sent events"): the status now
 * (or, with `Last-Event-ID`, every event after that one), then an `event: status` per transition
 * with its sequence number as `id:`, `event: progress` at most every `progressIntervalMs`, a
 * comment line after `heartbeatMs` of silence, and the end after a terminal state.
 *
 * Memory stays bounded whatever the client does: a notification only sets a flag (the log is
 * read from the database, `eventBatch` rows at a time), progress keeps only its latest value,
 * and nothing is written while the socket's buffer is full. Resolves once the response has ended
 * (terminal state, client gone, hub closing, or a database error: the client resumes by `id`).
 */
export async function streamUploadEvents(res: ServerResponse, options: EventStreamOptions): Promise<void> {
  const { db, uploadId, log } = options;
  let changed = false;
  let progress: UploadProgress | undefined;
  let closing = false;
  let wakeUp: (() => void) | undefined;
  const wake = () => {
    const resolve = wakeUp;
    wakeUp = undefined;
    resolve?.();
  };
  const unwatch = options.hub.watch(uploadId, {
    changed: () => {
      changed = true;
      wake();
    },
    progress: (latest) => {
      progress = latest;
      wake();
    },
    close: () => {
      closing = true;
      wake();
    },
  });
  res.once('close', () => {
    closing = true;
    wake();
  });
  // Wakes the loop after `ms` or at the first notification, whichever comes first.
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(wake, ms);
      wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  let lastWriteAt = Date.now();
  const write = async (text: string) => {
    lastWriteAt = Date.now();
    if (res.write(text)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        res.off('drain', done).off('close', done);
        resolve();
      };
      res.on('drain', done).on('close', done);
    });
  };
  const statusFrame = (seq: number, data: object) => `event: status\n${seq > 0 ? `id: ${seq}\n` : ''}data: ${JSON.stringify(data)}\n\n`;

  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-store',
    // A buffering proxy (nginx) would hold the events back until its buffer fills.
    'X-Accel-Buffering': 'no',
  });
  res.flushHeaders();

  let status: UploadStatus;
  let lastSeq: number;
  let lastOffset = -1;
  let nextProgressAt = 0;

  /** Writes the events after `lastSeq` (one batch); false when there were none. */
  const tellEvents = async (): Promise<boolean> => {
    changed = false;
    const events: UploadEventRow[] = await listEventsAfter(db, uploadId, lastSeq, eventBatch);
    if (events.length === 0) return false;
    if (events.length === eventBatch) changed = true;
    // The status JSON is built once per batch; each event says which transition it tells.
    const upload = await findUpload(db, uploadId);
    if (!upload) return false;
    const now = await options.statusJson(upload);
    for (const event of events) {
      const transition = { seq: event.seq, from: event.from_status, to: event.to_status, reason: event.reason, at: event.at };
      await write(statusFrame(event.seq, { ...now, transition }));
      if (closing) break;
      lastSeq = event.seq;
      status = event.to_status;
    }
    return true;
  };

  try {
    if (options.lastEventId === undefined) {
      // The row's status and the seq of its latest event change together, in one statement.
      const upload = await findUpload(db, uploadId);
      if (!upload) return;
      lastSeq = upload.event_seq;
      status = upload.status;
      await write(statusFrame(lastSeq, await options.statusJson(upload)));
    } else {
      lastSeq = options.lastEventId;
      status = (await findUpload(db, uploadId))?.status ?? 'deleted';
      changed = true;
    }

    while (!closing) {
      if (changed) {
        const told = await tellEvents();
        if (told) continue;
      }
      // An upload does not leave a terminal state on its own: the stream has told all there is.
      if (uploadStatusFacts[status].terminal) break;
      const now = Date.now();
      if (progress && now >= nextProgressAt) {
        const latest = progress;
        progress = undefined;
        // Bytes while uploading, percent while a job runs; a late one of an earlier state is dropped.
        const fits = 'offset' in latest ? status === 'uploading' && latest.offset > lastOffset : status === 'processing';
        if (fits) {
          if ('offset' in latest) lastOffset = latest.offset;
          nextProgressAt = now + options.progressIntervalMs;
          await write(`event: progress\ndata: ${JSON.stringify(latest)}\n\n`);
        }
        continue;
      }
      if (now - lastWriteAt >= options.heartbeatMs) {
        await write(': heartbeat\n\n');
        continue;
      }
      const heartbeatIn = lastWriteAt + options.heartbeatMs - now;
      await sleep(progress ? Math.min(heartbeatIn, nextProgressAt - now) : heartbeatIn);
    }
  } catch (err) {
    log.warn({ err, upload: uploadId }, 'event stream ended by an error; the client resumes from its last event id');
  } finally {
    unwatch();
    res.end();
  }
}
