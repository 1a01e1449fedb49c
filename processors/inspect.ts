// Inspects a stored upload in ONE read of its bytes: size, sha256, magic-byte type and the
// clamd verdict all come from the same pass, so a large file is read once and never held in
// memory (only the first SAMPLE_BYTES are kept, for file-type).
import { createHash } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileTypeFromBuffer } from 'file-type';
import { ScanError, type Scanner, type ScanVerdict } from './clamd.ts';

export interface InspectResult {
  size: number;
  sha256: string;
  /** What the bytes are (not what the client claimed); undefined when file-type does not know. */
  detected: { mime: string; ext: string } | undefined;
  scan: ScanVerdict | { status: 'skipped' };
}

/**
 * How much of the start file-type gets. Its own default is 4100 bytes, enough for every
 * type in the default policy, but given a prefix it treats the prefix as the whole file and
 * guesses generously past the end: an ID3 tag longer than the sample is reported as MP3
 * whatever follows, and a PNG whose chunks run past it as PNG without finding IDAT/acTL.
 * 1 MiB (file-type's own bound for a zip entry it inspects) covers large ID3 tags with
 * cover art and the first entries of zip-based formats, and costs 1 MiB per running inspection.
 */
const SAMPLE_BYTES = 1024 * 1024;

/**
 * Reads `source` once. With a scanner the bytes are streamed to clamd as they are read, with
 * backpressure (a slow clamd pauses `source`). Rejects with the ScanError if scanning fails
 * (never reports such a file as clean), or with the source's error if reading fails; either
 * way both `source` and the clamd connection are closed.
 */
export async function inspectStream(source: Readable, scanner: Scanner | undefined): Promise<InspectResult> {
  const hash = createHash('sha256');
  let size = 0;
  const sample: Buffer[] = [];
  let sampled = 0;

  // Decodes string chunks to Buffers (decodeStrings defaults to true), so the hash, the
  // count and clamd all see the same bytes.
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      size += chunk.length;
      if (sampled < SAMPLE_BYTES) {
        const part = chunk.subarray(0, SAMPLE_BYTES - sampled);
        sample.push(part);
        sampled += part.length;
      }
      done(null, chunk);
    },
  });

  // pipeline() destroys the source (and the tap, and so the scanner's read) on any failure.
  const feeding = pipeline(source, tap);
  const consuming = consume(tap, scanner);
  const [fed, scanned] = await Promise.allSettled([feeding, consuming]);

  // When the scan fails the feeding fails too (premature close): report the cause, the
  // ScanError. When the source fails the scanner sees the source's own error: report that.
  if (scanned.status === 'rejected' && scanned.reason instanceof ScanError) throw scanned.reason;
  if (fed.status === 'rejected') throw fed.reason;
  if (scanned.status === 'rejected') throw scanned.reason;

  return { size, sha256: hash.digest('hex'), detected: await detect(Buffer.concat(sample)), scan: scanned.value };
}

async function consume(tap: Transform, scanner: Scanner | undefined): Promise<InspectResult['scan']> {
  if (!scanner) {
    tap.resume();
    return { status: 'skipped' };
  }
  try {
    const verdict = await scanner.scanStream(tap);
    // A verdict about part of the file is not a verdict about the file.
    if (!tap.readableEnded) throw new ScanError(`${scanner.describe()} answered before the whole file was sent`);
    return verdict;
  } catch (err) {
    // The scanner may fail before reading at all (clamd unreachable): stop the pipeline,
    // which would otherwise wait forever for someone to read the tap.
    tap.destroy();
    throw err;
  }
}

async function detect(sample: Buffer): Promise<InspectResult['detected']> {
  try {
    const type = await fileTypeFromBuffer(sample);
    return type && { mime: type.mime, ext: type.ext };
  } catch {
    // file-type throws on some malformed containers (e.g. an oversized zip entry). Unknown
    // is the safe answer: the type policy rejects what it cannot identify.
    return undefined;
  }
}
