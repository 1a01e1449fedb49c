// A slow tus client for many uploads at once: node:http, one POST and one PATCH whose body
// trickles at a set rate, paced by one shared clock (a thousand uploads cost one timer), so the
// bench process is never what limits the server. Each upload's bytes are its own (a rotation of
// one random block) and hashed as they are sent, to check the stored file against.
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { send } from './clients.ts';

const tickMs = 100;
const block = randomBytes(1024 * 1024);

/** One clock for every upload: a promise that settles on the next tick. */
class SharedClock {
  private next: Promise<void> | undefined;
  tick(): Promise<void> {
    this.next ??= new Promise((resolve) =>
      setTimeout(() => {
        this.next = undefined;
        resolve();
      }, tickMs),
    );
    return this.next;
  }
}
const clock = new SharedClock();

/**
 * The part of every upload file-type looks at is zeros: a random head matches some type's magic
 * bytes about once in a thousand uploads, and the server rightly refuses it as a disguised file.
 */
const headBytes = 4100;

/** Bytes `from`..`to` of upload `index`: a zero head, then the block rotated by a distinct amount per upload. */
function bytesOf(index: number, from: number, to: number): Buffer {
  const parts: Buffer[] = [];
  for (let at = from; at < to; ) {
    if (at < headBytes) {
      const zeros = Buffer.alloc(Math.min(headBytes, to) - at);
      parts.push(zeros);
      at += zeros.length;
      continue;
    }
    const start = (at + index * 7919) % block.length;
    const part = block.subarray(start, Math.min(block.length, start + (to - at)));
    parts.push(part);
    at += part.length;
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/** A body that yields no more than `bytesPerSecond` allows since it began; hashes what it yields. */
function trickle(index: number, size: number, bytesPerSecond: number, hash: ReturnType<typeof createHash>): Readable {
  return Readable.from(
    (async function* () {
      const started = performance.now();
      for (let sent = 0; sent < size; ) {
        await clock.tick();
        const due = Math.min(size, Math.floor((bytesPerSecond * (performance.now() - started)) / 1000));
        if (due <= sent) continue;
        const chunk = bytesOf(index, sent, due);
        hash.update(chunk);
        sent = due;
        yield chunk;
      }
    })(),
    { objectMode: false },
  );
}

export interface SlowUploadResult {
  id: string;
  sha256: string;
}

/** Creates upload `index` and sends its `size` bytes at `bytesPerSecond` in one PATCH. */
export async function slowUpload(
  baseUrl: string,
  index: number,
  size: number,
  bytesPerSecond: number,
  onPatch: (inFlight: boolean) => void,
): Promise<SlowUploadResult> {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const created = await send(`${baseUrl}/files`, 'POST', {
    // A socket per request: reusing one the server is closing (keep-alive timeout) races into ECONNRESET.
    Connection: 'close',
    'Upload-Length': String(size),
    'Content-Length': '0',
    'Upload-Metadata': `filename ${b64(`slow-${index}.bin`)},filetype ${b64('application/octet-stream')}`,
  }).catch((error: unknown) => {
    throw new Error(`POST of upload ${index} failed`, { cause: error });
  });
  if (created.status !== 201 || !created.location) throw new Error(`POST answered ${created.status}`);
  const url = new URL(created.location, baseUrl).toString();
  const hash = createHash('sha256');
  onPatch(true);
  const patchStarted = performance.now();
  const patched = await send(
    url,
    'PATCH',
    { Connection: 'close', 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream', 'Content-Length': String(size) },
    trickle(index, size, bytesPerSecond, hash),
  )
    .catch((error: unknown) => {
      throw new Error(`PATCH of upload ${index} failed after ${((performance.now() - patchStarted) / 1000).toFixed(1)} s`, { cause: error });
    })
    .finally(() => onPatch(false));
  if (patched.status !== 204 || patched.offset !== String(size)) {
    throw new Error(`PATCH of upload ${index} answered ${patched.status} with Upload-Offset ${patched.offset}, expected ${size}`);
  }
  return { id: url.split('/').pop()!, sha256: hash.digest('hex') };
}
