import type http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../infra/settings/log.ts';

type AsyncRequestListener = (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>;

/**
 * An http.Server that can stop without hanging on slow clients. Koa's callback returns each
 * request's promise; they are kept, so a stop can wait until @tus/server has stored what every
 * PATCH brought before the database and the locks go away.
 */
export interface StoppableHandler {
  listener: http.RequestListener;
  /**
   * Stops accepting and closes idle connections at once. Requests under way get `graceMs` to
   * finish; then their connections are closed, which @tus/server takes as an aborted PATCH: it
   * keeps what was written and the client resumes from the offset HEAD reports. Resolves once
   * every connection is gone and every handler has returned.
   */
  stop(server: http.Server, graceMs: number, log: Logger): Promise<void>;
}

export function stoppableHandler(handle: AsyncRequestListener): StoppableHandler {
  const running = new Set<Promise<void>>();
  let stopping: http.Server | undefined;
  return {
    listener: (req, res) => {
      const run = handle(req, res).finally(() => {
        running.delete(run);
        // Its keep-alive connection is idle now; server.close() closed only those idle at the time.
        stopping?.closeIdleConnections();
      });
      running.add(run);
    },
    stop: async (server, graceMs, log) => {
      stopping = server;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const grace = new AbortController();
      const inTime = await Promise.race([closed.then(() => true), sleep(graceMs, false, { signal: grace.signal }).catch(() => false)]);
      grace.abort();
      if (!inTime) {
        log.warn({ requests: running.size, graceMs }, 'closing the connections of requests still under way after SHUTDOWN_GRACE');
        server.closeAllConnections();
        await closed;
      }
      await Promise.allSettled([...running]);
    },
  };
}
