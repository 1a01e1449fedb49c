import http from 'node:http';
import { waitOnNotify } from './waitOnNotify.ts';

/** One dispatched Server-Sent Event, as an EventSource would hand it over (plus the comments seen before it). */
export interface ServerSentEvent {
  event: string;
  id: string | undefined;
  data: string;
}

export interface EventStreamClient {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Every event so far, in order. */
  events: ServerSentEvent[];
  /** Every comment line so far (without the colon). */
  comments: string[];
  /** Resolves when the server has ended the stream. */
  ended: Promise<void>;
  isEnded(): boolean;
  /** Waits until `test` holds for the events so far (fails if the stream ends first). */
  waitFor(what: string, test: (events: ServerSentEvent[]) => boolean, timeoutMs?: number): Promise<ServerSentEvent[]>;
  close(): void;
}

/**
 * A text/event-stream client over node:http, parsing as the WHATWG "event stream interpretation"
 * does: fields `event`, `data` (joined by newlines), `id`; lines starting with a colon are
 * comments; a blank line dispatches. Unlike Node's EventSource (behind a flag in Node 24) it can send any header.
 */
export function openEventStream(url: string, headers: Record<string, string> = {}): Promise<EventStreamClient> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { Accept: 'text/event-stream', ...headers } }, (res) => {
      const events: ServerSentEvent[] = [];
      const comments: string[] = [];
      const waiters = new Set<() => void>();
      let ended = false;
      let buffer = '';
      let event = { event: '', data: [] as string[], id: undefined as string | undefined };
      const onLine = (line: string) => {
        if (line === '') {
          if (event.data.length > 0) events.push({ event: event.event || 'message', id: event.id, data: event.data.join('\n') });
          event = { event: '', data: [], id: undefined };
          return;
        }
        if (line.startsWith(':')) return void comments.push(line.slice(1).trim());
        const colon = line.indexOf(':');
        const field = colon === -1 ? line : line.slice(0, colon);
        const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event.event = value;
        else if (field === 'data') event.data.push(value);
        else if (field === 'id') event.id = value;
      };
      const notify = () => {
        for (const waiter of waiters) waiter();
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        const lines = buffer.split(/\r\n|\r|\n/);
        buffer = lines.pop()!;
        for (const line of lines) onLine(line);
        notify();
      });
      const endedPromise = new Promise<void>((done) => {
        const end = () => {
          ended = true;
          notify();
          done();
        };
        res.once('end', end);
        res.once('close', end);
        res.once('error', end);
      });
      resolve({
        status: res.statusCode!,
        headers: res.headers,
        events,
        comments,
        ended: endedPromise,
        isEnded: () => ended,
        waitFor: (what, test, timeoutMs = 60_000) =>
          waitOnNotify(
            waiters,
            () => {
              if (test(events)) return events;
              if (ended) throw new Error(`the stream ended before ${what}; events: ${JSON.stringify(events.map((e) => [e.event, e.id, e.data.slice(0, 80)]))}`);
              return undefined;
            },
            () => `no ${what} within ${timeoutMs} ms; events: ${JSON.stringify(events.map((e) => [e.event, e.id]))}`,
            timeoutMs,
          ),
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
  });
}
