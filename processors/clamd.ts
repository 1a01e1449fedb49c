// Virus scanning through clamd's INSTREAM command.
//
// Why not the `clamscan` npm package (2.4): its scanStream() ignores backpressure (every
// 'data' chunk is written to the socket without looking at write()'s result, and the
// source is only paused once clamd *answers*), so a stream's RSS grew by the
// stream's whole size. A refusal such as "INSTREAM size limit exceeded. ERROR" surfaces as a
// bare `write EPIPE` (the reply text is lost) and is also console.error'ed; init() execs
// a clamdscan binary and ping() resolves with a still-open socket. The protocol is small
// enough to speak directly, so this file does, with backpressure and strict reply parsing.
//
// Protocol (clamd(8)): send `zINSTREAM\0`, then chunks each prefixed by a 4-byte
// big-endian length, then a zero length. clamd answers one NUL-terminated line and closes:
//   `stream: OK` | `stream: <name> FOUND` | `<message> ERROR` (e.g. size limit exceeded,
// sent as soon as StreamMaxLength is passed, after which clamd closes mid-upload).
// A stream clamd did not fully receive and answer is never clean: everything else is a ScanError,
// of one of two kinds when the cause is known (callers treat them differently):
//   ClamdUnreachableError  nothing could be scanned: clamd is down or restarting (wait, retry)
//   StreamTooLargeError    clamd refused the stream past its StreamMaxLength (retrying cannot help)
import net from 'node:net';
import type { Readable } from 'node:stream';

export type ClamdConfig =
  | { socket: string; timeoutMs: number }
  | { host: string; port: number; timeoutMs: number };

export type ScanVerdict = { status: 'clean' } | { status: 'infected'; viruses: string[] };

export interface Scanner {
  /** Streams `stream` to clamd; resolves only with a real verdict, otherwise throws. */
  scanStream(stream: Readable): Promise<ScanVerdict>;
  /** PING → PONG, for readiness checks. */
  ping(): Promise<void>;
  describe(): string;
}

/** clamd unreachable, too slow, refused the stream, or answered anything but a verdict. */
export class ScanError extends Error {
  override name = 'ScanError';
}

/** clamd could not be reached (refused, no socket, no answer to connecting) or went away mid-scan. */
export class ClamdUnreachableError extends ScanError {
  override name = 'ClamdUnreachableError';
}

/** clamd refused the stream as longer than its StreamMaxLength: the same bytes will be refused again. */
export class StreamTooLargeError extends ScanError {
  override name = 'StreamTooLargeError';
}

/** Cut short before a verdict; scanStream() finds out why (see classifyCut). */
class CutShortError extends ScanError {
  readonly duringStream: boolean;

  constructor(
    message: string,
    duringStream: boolean,
  ) {
    super(message);
    this.duringStream = duringStream;
  }
}

/** clamd's own words when a stream passes StreamMaxLength. */
const sizeLimitReply = /size limit exceeded/i;

/** A clamd reply longer than this is not a verdict; stop collecting it. */
const MAX_REPLY_BYTES = 64 * 1024;

export function createScanner(config: ClamdConfig): Scanner {
  const target = 'socket' in config ? `unix:${config.socket}` : `tcp://${config.host}:${config.port}`;
  const connectOptions: net.NetConnectOpts =
    'socket' in config ? { path: config.socket } : { host: config.host, port: config.port };

  const scanner: Scanner = {
    describe: () => `clamd at ${target}`,

    async ping() {
      const session = new Session(connectOptions, config.timeoutMs, target);
      try {
        await session.connected();
        session.socket.end('zPING\0');
        const reply = await session.reply('waiting for PONG');
        if (reply !== 'PONG') throw new ScanError(`clamd at ${target} answered PING with ${JSON.stringify(reply)}`);
      } finally {
        session.socket.destroy();
      }
    },

    async scanStream(stream) {
      const session = new Session(connectOptions, config.timeoutMs, target);
      try {
        return await streamTo(session, stream, target);
      } catch (error) {
        throw error instanceof CutShortError ? await classifyCut(error, session, scanner) : error;
      } finally {
        session.socket.destroy();
      }
    },
  };
  return scanner;
}

async function streamTo(session: Session, stream: Readable, target: string): Promise<ScanVerdict> {
  await session.connected();
  session.socket.write('zINSTREAM\0');
  // Errors thrown by the iterator are the source's own and propagate unchanged; leaving
  // the loop early (clamd refused) destroys the source, which is what callers want.
  for await (const data of stream as AsyncIterable<Buffer | string>) {
    const chunk = typeof data === 'string' ? Buffer.from(data) : data;
    // A zero length would end the stream early, and clamd would scan only a prefix.
    if (chunk.length === 0) continue;
    session.assertOpen('before the end of the stream');
    // Backpressure: while clamd does not take the data, stop pulling from the source.
    if (!session.send(chunk)) await session.drained();
  }
  session.assertOpen('before the end of the stream');
  session.socket.write(Buffer.alloc(4));
  return parseVerdict(await session.reply('waiting for the verdict'), target);
}

/**
 * Why clamd ended a stream without a verdict. Its reply says so when we read it, but it is
 * often lost (see Session.explain), so a new connection asks: when clamd cannot be reached it
 * went away (an outage); when it answers PING after cutting the stream mid-way it refused the
 * stream itself, which it does only past StreamMaxLength (a restart cuts too, but no restarted
 * clamd answers within milliseconds).
 */
async function classifyCut(cut: CutShortError, session: Session, scanner: Scanner): Promise<ScanError> {
  const said = session.said();
  const sent = mib(session.sentBytes);
  const tooLarge = (detail: string) =>
    new StreamTooLargeError(
      `${scanner.describe()} refused the stream as larger than its StreamMaxLength (${detail}); ` +
        'raise StreamMaxLength (and MaxScanSize, MaxFileSize) in clamd.conf above the largest allowed type',
    );
  if (sizeLimitReply.test(said)) return tooLarge(`it said ${JSON.stringify(said)} after ${sent} were sent`);
  // It answered something else: it is there, and said no.
  if (said) return cut;
  const pinged = await scanner.ping().then(
    () => undefined,
    (error: unknown) => error,
  );
  if (pinged instanceof ClamdUnreachableError) return new ClamdUnreachableError(`${cut.message}; then ${pinged.message}`);
  if (pinged === undefined && cut.duringStream) return tooLarge(`it ended the stream after ${sent} were sent and still answers PING`);
  return cut;
}

const mib = (bytes: number) => `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;

/**
 * One clamd connection. `timeoutMs` bounds each wait *on clamd* (connect, a full socket
 * buffer, the verdict) rather than the whole scan, so a slow source is not mistaken for a
 * dead clamd and a 500 MiB upload is not cut off by a fixed deadline. (clamd has its own
 * ReadTimeout, default 120 s, for a client that stops sending.)
 */
class Session {
  readonly socket: net.Socket;
  private readonly replyChunks: Buffer[] = [];
  private replyBytes = 0;
  private failure: Error | undefined;
  private closed = false;
  /** Stream bytes handed to the socket (not necessarily read by clamd yet). */
  sentBytes = 0;
  /** Resolves (never rejects) once clamd closed its side or the socket failed. */
  private readonly settled: Promise<void>;

  private readonly timeoutMs: number;
  private readonly target: string;

  constructor(
    options: net.NetConnectOpts,
    timeoutMs: number,
    target: string,
  ) {
    this.timeoutMs = timeoutMs;
    this.target = target;
    this.socket = net.createConnection(options);
    this.settled = new Promise((resolve) => {
      this.socket.on('data', (chunk: Buffer) => {
        if (this.replyBytes >= MAX_REPLY_BYTES) return;
        this.replyChunks.push(chunk);
        this.replyBytes += chunk.length;
      });
      this.socket.on('error', (err) => {
        this.failure ??= err;
        resolve();
      });
      const done = () => {
        this.closed = true;
        resolve();
      };
      this.socket.on('end', done);
      this.socket.on('close', done);
    });
  }

  /** Refused, no socket, or no answer within timeoutMs: clamd is unreachable (nothing was sent). */
  async connected(): Promise<void> {
    await this.wait('connecting', new Promise((resolve) => this.socket.once('connect', resolve)), ClamdUnreachableError);
    if (this.failure || this.closed) throw new ClamdUnreachableError(`cannot reach clamd at ${this.target}: ${this.explain()}`);
  }

  /** One INSTREAM chunk with its length; false when the socket buffer is full (wait for drained()). */
  send(chunk: Buffer): boolean {
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32BE(chunk.length);
    this.socket.write(header);
    this.sentBytes += chunk.length;
    return this.socket.write(chunk);
  }

  async drained(): Promise<void> {
    await this.wait('sending (clamd stopped reading)', new Promise((resolve) => this.socket.once('drain', resolve)));
    this.assertOpen('while sending');
  }

  /** clamd closing, failing or answering before we finished sending is a refusal, never a verdict. */
  assertOpen(when: string): void {
    if (this.failure || this.closed || this.replyBytes > 0) {
      throw new CutShortError(`clamd at ${this.target} ended the stream ${when}: ${this.explain()}`, true);
    }
  }

  async reply(what: string): Promise<string> {
    await this.wait(what, this.settled);
    if (this.failure || !this.said()) {
      // A broken pipe or a reset means clamd closed before reading all we sent: a cut mid-stream.
      const code = (this.failure as NodeJS.ErrnoException | undefined)?.code;
      throw new CutShortError(`clamd at ${this.target} failed while ${what}: ${this.explain()}`, code === 'EPIPE' || code === 'ECONNRESET');
    }
    return this.said();
  }

  /** Waits for `event` or the end of the connection, whichever comes first, within timeoutMs. */
  private async wait(what: string, event: Promise<unknown>, Timeout: typeof ScanError = ScanError): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.timeoutMs);
    });
    try {
      if ((await Promise.race([event, this.settled, timeout])) === 'timeout') {
        throw new Timeout(`clamd at ${this.target} did not respond within ${this.timeoutMs} ms while ${what}`);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** What clamd answered so far, without its NUL terminator. */
  said(): string {
    return Buffer.concat(this.replyChunks).toString('utf8').replace(/\0+$/, '').trim();
  }

  /**
   * Prefers clamd's own words (e.g. "INSTREAM size limit exceeded. ERROR"). They are often
   * lost: clamd replies and closes at once, our next write fails with EPIPE/ECONNRESET, and
   * Node destroys the socket before reading the reply already sitting in its buffer.
   */
  private explain(): string {
    const said = this.said();
    if (said) return JSON.stringify(said);
    if (!this.failure) return 'connection closed without an answer';
    const code = (this.failure as NodeJS.ErrnoException).code;
    return this.failure.message + (code && !this.failure.message.includes(code) ? ` (${code})` : '');
  }
}

function parseVerdict(reply: string, target: string): ScanVerdict {
  // With AllMatchScan clamd may send several FOUND lines; anything else on any line is fatal.
  const lines = reply.split(/[\0\n]+/).map((l) => l.trim()).filter(Boolean);
  if (lines.length === 1 && lines[0] === 'stream: OK') return { status: 'clean' };
  const viruses = lines.map((l) => /^stream: (.+) FOUND$/.exec(l)?.[1]);
  if (viruses.length > 0 && viruses.every((v) => v !== undefined)) {
    return { status: 'infected', viruses: [...new Set(viruses as string[])] };
  }
  const refusal = `clamd at ${target} did not give a verdict: ${JSON.stringify(reply)}`;
  // A size limit may be answered only after the last chunk: classifyCut names it.
  throw sizeLimitReply.test(reply) ? new CutShortError(refusal, false) : new ScanError(refusal);
}
