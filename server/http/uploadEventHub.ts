import type { OpenDatabase } from '../infra/db/database.ts';
import { uploadEventsChannel, uploadProgressChannel, type UploadProgress } from '../infra/db/uploadEventLog.ts';
import type { Logger } from '../infra/settings/log.ts';

/** What one event stream is told by its instance's hub. */
export interface UploadWatcher {
  /** Upload `seq` was written (or, after the LISTEN connection was lost, events may have been missed): read the log. */
  changed(): void;
  progress(progress: UploadProgress): void;
  /** The instance is stopping: end the stream. */
  close(): void;
}

export interface UploadEventHub {
  /** Tells `watcher` about upload `uploadId` until the returned function is called. */
  watch(uploadId: string, watcher: UploadWatcher): () => void;
  /** Closes every stream, then the LISTEN connection. */
  close(): Promise<void>;
}

/**
 * One LISTEN connection per instance, on the events and the progress channel, fanned out to
 * the event streams this instance holds: a transition written by any instance or worker reaches
 * every stream of that upload, at the cost of one connection however many streams are open.
 * The hub keeps no events, only who watches what; each stream reads the log itself.
 */
export async function openUploadEventHub(database: OpenDatabase, log: Logger): Promise<UploadEventHub> {
  const watchers = new Map<string, Set<UploadWatcher>>();
  let closed = false;

  const onNotify = (payload: string, channel: string) => {
    let message: { id?: unknown } & Record<string, unknown>;
    try {
      message = JSON.parse(payload) as typeof message;
    } catch {
      log.warn({ channel }, 'a notification that is not JSON');
      return;
    }
    const watching = typeof message.id === 'string' ? watchers.get(message.id) : undefined;
    if (!watching) return;
    for (const watcher of watching) {
      if (channel === uploadEventsChannel) watcher.changed();
      else if (typeof message.percent === 'number') watcher.progress({ percent: message.percent });
      else if (typeof message.offset === 'number') watcher.progress({ offset: message.offset, size: typeof message.size === 'number' ? message.size : null });
    }
  };
  // Notifications sent while the connection was down are lost: every stream reads its log again.
  const onResubscribed = () => {
    for (const watching of watchers.values()) for (const watcher of watching) watcher.changed();
  };
  const unlisten = await database.listen([uploadEventsChannel, uploadProgressChannel], onNotify, onResubscribed);

  return {
    watch(uploadId, watcher) {
      if (closed) {
        watcher.close();
        return () => undefined;
      }
      let watching = watchers.get(uploadId);
      if (!watching) watchers.set(uploadId, (watching = new Set()));
      watching.add(watcher);
      return () => {
        watching.delete(watcher);
        if (watching.size === 0 && watchers.get(uploadId) === watching) watchers.delete(uploadId);
      };
    },
    async close() {
      closed = true;
      for (const watching of [...watchers.values()]) for (const watcher of [...watching]) watcher.close();
      await unlisten();
    },
  };
}
