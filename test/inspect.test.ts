// processors/inspect.ts + processors/clamd.ts against a real clamd (test/services/clamd.sh)
// loaded with the repo's own signatures, plus a few fake clamds for the failure modes a real
// one will not produce on demand. clamd being unreachable FAILS these tests, never skips them.
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { crc32, deflateSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ClamdConfig } from '../processors/clamd.ts';
import { ClamdUnreachableError, ScanError, StreamTooLargeError, createScanner } from '../processors/clamd.ts';
import { inspectStream } from '../processors/inspect.ts';
import { clamdHost, clamdPort, clamdSocket, servicesDir } from './services/env.ts';
import { freePort } from './support/freePort.ts';
import { serviceScript } from './support/serviceScripts.ts';

const MiB = 1024 * 1024;
const TIMEOUT_MS = 30_000;
const socketConfig: ClamdConfig = { socket: clamdSocket, timeoutMs: TIMEOUT_MS };
const tcpConfig: ClamdConfig = { host: clamdHost, port: clamdPort, timeoutMs: TIMEOUT_MS };

// A second instance that refuses streams over 1 MiB, to see a real "size limit exceeded".
const SMALL = { instance: 'clamd-small', port: 13311, streamMax: '1M' };
const smallSocketConfig: ClamdConfig = { socket: path.join(servicesDir, SMALL.instance, 'clamd.sock'), timeoutMs: TIMEOUT_MS };
const smallTcpConfig: ClamdConfig = { host: '127.0.0.1', port: SMALL.port, timeoutMs: TIMEOUT_MS };

beforeAll(async () => {
  await serviceScript('clamd', 'start');
  await serviceScript('clamd', 'start', { CLAMD_INSTANCE: SMALL.instance, CLAMD_TCP_PORT: String(SMALL.port), CLAMD_STREAM_MAX: SMALL.streamMax });
  // Loud failure rather than a skip if clamd is not really there.
  await createScanner(socketConfig).ping();
  await createScanner(tcpConfig).ping();
});

// --- test data, all built at run time -------------------------------------------------

/** The EICAR test string, assembled here so no file in the repo contains it whole. */
const eicar = () => Buffer.from(['X5O!P%@AP[4\\PZX54(P^)7CC', ')7}$EICAR-STANDARD-ANTIVIRUS', '-TEST-FILE!$H+H*'].join(''));
/** Matches the made-up Tus.Test.Marker signature in test/services/clamav/db/tus-test.ndb. */
const marker = () => Buffer.from(['TUS-TEST-MARKER', 'do-not-upload', '6a1f0c2e'].join(':'));

function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** A valid 2x2 RGB PNG. */
function png(): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(2, 0);
  ihdr.writeUInt32BE(2, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit, truecolour, deflate, no filter, no interlace
  const rows = Buffer.from([0, 255, 0, 0, 0, 255, 0, 0, 0, 0, 255, 255, 255, 255]);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(rows)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

function pdf(): Buffer {
  return Buffer.from(
    '%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n' +
      '2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n' +
      '3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 72 72] >> endobj\n' +
      'trailer << /Root 1 0 R >>\n%%EOF\n',
  );
}

/** Deterministic pseudo-random bytes (AES-CTR keystream): fast, and reproducible for sha256. */
function keystream(seed: string, bytes: number): Buffer {
  const key = createHash('sha256').update(seed).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(bytes));
}

/** `total` bytes of keystream made on demand in 1 MiB chunks: never held in memory. */
function generated(seed: string, total: number, onRead?: (bytes: number) => void): Readable {
  const cipher = createCipheriv('aes-256-ctr', createHash('sha256').update(seed).digest(), Buffer.alloc(16));
  const zeros = Buffer.alloc(MiB);
  let left = total;
  return new Readable({
    read() {
      const n = Math.min(MiB, left);
      left -= n;
      onRead?.(n);
      this.push(n > 0 ? cipher.update(zeros.subarray(0, n)) : null);
    },
  });
}

async function sha256Of(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

// --- real clamd -----------------------------------------------------------------------

describe.each([
  ['unix socket', socketConfig],
  ['TCP 127.0.0.1:13310', tcpConfig],
])('inspectStream with clamd over %s', (_name, config) => {
  const scanner = createScanner(config);

  it('identifies a PNG, hashes and counts it, and finds it clean', async () => {
    const data = png();
    const result = await inspectStream(Readable.from([data]), scanner);
    expect(result).toEqual({
      size: data.length,
      sha256: sha256(data),
      detected: { mime: 'image/png', ext: 'png' },
      scan: { status: 'clean' },
    });
  });

  it('identifies a PDF', async () => {
    const result = await inspectStream(Readable.from([pdf()]), scanner);
    expect(result.detected).toEqual({ mime: 'application/pdf', ext: 'pdf' });
    expect(result.scan).toEqual({ status: 'clean' });
  });

  it('finds EICAR', async () => {
    const result = await inspectStream(Readable.from([eicar()]), scanner);
    expect(result.scan.status).toBe('infected');
    expect(result.scan).toEqual({ status: 'infected', viruses: [expect.stringMatching(/^Tus\.Test\.Eicar/)] });
  });

  it('finds EICAR at an offset inside a larger harmless file, across chunk boundaries', async () => {
    const data = Buffer.concat([Buffer.alloc(300_001, 'harmless text '), eicar(), Buffer.alloc(200_000, 'more ')]);
    // 7 KiB chunks so the signature straddles two INSTREAM chunks.
    const chunks = Array.from({ length: Math.ceil(data.length / 7168) }, (_, i) => data.subarray(i * 7168, (i + 1) * 7168));
    const result = await inspectStream(Readable.from(chunks), scanner);
    expect(result.size).toBe(data.length);
    expect(result.scan).toEqual({ status: 'infected', viruses: ['Tus.Test.Eicar-Body.UNOFFICIAL'] });
  });

  it('finds the custom marker signature deep inside a PNG-typed file', async () => {
    const data = Buffer.concat([png(), keystream('marker', 3 * MiB), marker(), keystream('tail', 1000)]);
    const result = await inspectStream(Readable.from([data]), scanner);
    expect(result.detected?.mime).toBe('image/png');
    expect(result.scan).toEqual({ status: 'infected', viruses: ['Tus.Test.Marker.UNOFFICIAL'] });
  });

  it('leaves random bytes unidentified and clean', async () => {
    const data = keystream('random', 256 * 1024);
    const result = await inspectStream(Readable.from([data]), scanner);
    expect(result).toEqual({ size: data.length, sha256: sha256(data), detected: undefined, scan: { status: 'clean' } });
  });

  it('scans an empty file', async () => {
    const result = await inspectStream(Readable.from([]), scanner);
    expect(result).toEqual({ size: 0, sha256: sha256(Buffer.alloc(0)), detected: undefined, scan: { status: 'clean' } });
  });

  it('answers ping and describes itself', async () => {
    await scanner.ping();
    expect(scanner.describe()).toMatch('socket' in config ? /^clamd at unix:\/.*clamd\.sock$/ : /^clamd at tcp:\/\/127\.0\.0\.1:13310$/);
  });
});

describe('inspectStream on large input', () => {
  it('streams 200 MiB through clamd in one pass with flat memory', async () => {
    const total = 200 * MiB;
    const expected = await sha256Of(generated('big', total));
    const rssBefore = process.memoryUsage().rss;
    let rssMax = rssBefore;
    const sampler = setInterval(() => (rssMax = Math.max(rssMax, process.memoryUsage().rss)), 25);
    const started = Date.now();
    let pulled = 0;
    try {
      const result = await inspectStream(generated('big', total, (n) => (pulled += n)), createScanner(socketConfig));
      expect(result).toEqual({ size: total, sha256: expected, detected: undefined, scan: { status: 'clean' } });
    } finally {
      clearInterval(sampler);
    }
    expect(pulled).toBe(total); // read exactly once
    const grownMiB = (rssMax - rssBefore) / MiB;
    console.log(`200 MiB inspected in ${Date.now() - started} ms, RSS grew ${grownMiB.toFixed(1)} MiB`);
    expect(grownMiB).toBeLessThan(64);
  }, 120_000);

  it('identifies magic bytes split across many tiny chunks', async () => {
    const data = png();
    const chunks = Array.from({ length: Math.ceil(data.length / 3) }, (_, i) => data.subarray(i * 3, i * 3 + 3));
    const result = await inspectStream(Readable.from(chunks), undefined);
    expect(result.detected).toEqual({ mime: 'image/png', ext: 'png' });
    expect(result.sha256).toBe(sha256(data));
  });

  it('identifies an ISO-BMFF video by its ftyp box', async () => {
    const ftyp = Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from('ftypisom\0\0\x02\0isomiso2', 'latin1')]);
    const result = await inspectStream(Readable.from([ftyp, keystream('mdat', 100_000)]), undefined);
    expect(result.detected).toEqual({ mime: 'video/mp4', ext: 'mp4' });
  });

  it('without a scanner still hashes, counts and identifies, and reports the scan skipped', async () => {
    const data = Buffer.concat([png(), keystream('x', 5 * MiB)]);
    const result = await inspectStream(Readable.from([data]), undefined);
    expect(result).toEqual({ size: data.length, sha256: sha256(data), detected: { mime: 'image/png', ext: 'png' }, scan: { status: 'skipped' } });
  });
});

// --- failures: always a ScanError (or the source's error), never "clean" ----------------

describe('scan failures', () => {
  it.each([
    ['unix socket', smallSocketConfig],
    ['TCP', smallTcpConfig],
  ])('a stream over StreamMaxLength (%s) is a StreamTooLargeError naming the limit, every time', async (_name, config) => {
    // clamd's reply is often lost (our next write fails with EPIPE first); the refusal must be
    // recognised either way, so try several times.
    for (let i = 0; i < 5; i++) {
      const source = generated(`too-big-${i}`, 4 * MiB);
      const error = await inspectStream(source, createScanner(config)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StreamTooLargeError);
      expect((error as Error).message).toMatch(/larger than its StreamMaxLength/);
      expect(source.destroyed).toBe(true);
    }
  });

  it('the small instance still scans what fits (the refusal above is about size)', async () => {
    const result = await inspectStream(Readable.from([eicar()]), createScanner(smallSocketConfig));
    expect(result.scan.status).toBe('infected');
  });

  it('an absent socket is a ClamdUnreachableError, for scans and pings, and the source is released', async () => {
    const scanner = createScanner({ socket: path.join(servicesDir, 'no-such-clamd.sock'), timeoutMs: 2000 });
    const source = Readable.from([png()]);
    await expect(inspectStream(source, scanner)).rejects.toThrow(ClamdUnreachableError);
    expect(source.destroyed).toBe(true);
    await expect(scanner.ping()).rejects.toThrow(/cannot reach clamd/);
  });

  it('a closed TCP port is a ClamdUnreachableError', async () => {
    const port = await freePort();
    const scanner = createScanner({ host: '127.0.0.1', port, timeoutMs: 2000 });
    await expect(inspectStream(Readable.from([png()]), scanner)).rejects.toThrow(ClamdUnreachableError);
    await expect(scanner.ping()).rejects.toThrow(ClamdUnreachableError);
  });

  it('a clamd that stops reading pauses the source (backpressure) and times out as a ScanError', async () => {
    const fake = await fakeClamd((socket) => socket.pause());
    let pulled = 0;
    const source = generated('stall', 1024 * MiB, (n) => (pulled += n));
    // The fake never answers: the timeout is what ends the scan, as its message says.
    const error = await inspectStream(source, createScanner({ ...fake.config, timeoutMs: 500 })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ScanError);
    expect((error as Error).message).toMatch(/did not respond within 500 ms/);
    // Socket buffers plus stream high-water marks, not the gigabyte.
    expect(pulled).toBeLessThan(32 * MiB);
    expect(source.destroyed).toBe(true);
    await fake.waitForNoConnections();
    await fake.close();
  });

  it('a clamd that takes everything but never answers times out as a ScanError', async () => {
    const fake = await fakeClamd((socket) => socket.resume());
    const error = await inspectStream(Readable.from([Buffer.alloc(100_000, 1)]), createScanner({ ...fake.config, timeoutMs: 300 })).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ScanError);
    expect((error as Error).message).toMatch(/while waiting for the verdict/);
    await fake.close();
  });

  it.each([
    ['a non-verdict answer', 'stream: maybe\0'],
    ['an ERROR answer', 'stream: Can not allocate memory ERROR\0'],
    ['an empty answer', ''],
    ['OK mixed with garbage', 'stream: OK\0hello\0'],
  ])('%s after the full stream is a ScanError', async (_name, reply) => {
    const fake = await fakeClamd((socket) => {
      let tail = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        tail = Buffer.concat([tail, chunk]).subarray(-4);
        if (tail.equals(Buffer.alloc(4))) socket.end(reply);
      });
    });
    await expect(inspectStream(Readable.from([Buffer.alloc(50_000, 1)]), createScanner(fake.config))).rejects.toThrow(ScanError);
    await fake.close();
  });

  it('"stream: OK" before the stream was sent is a ScanError, not clean', async () => {
    const fake = await fakeClamd((socket) => {
      socket.resume();
      socket.end('stream: OK\0');
    });
    const source = generated('early', 64 * MiB);
    const error = await inspectStream(source, createScanner(fake.config)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ScanError);
    expect((error as Error).message).toMatch(/stream: OK/);
    await fake.close();
  });

  it('a source error rejects with that error and closes the clamd connection', async () => {
    const fake = await fakeClamd((socket) => socket.resume());
    const boom = new Error('disk went away');
    let sent = 0;
    const source = new Readable({
      read() {
        if (sent++ < 5) this.push(Buffer.alloc(64 * 1024, 1));
        else this.destroy(boom);
      },
    });
    await expect(inspectStream(source, createScanner(fake.config))).rejects.toBe(boom);
    await fake.waitForNoConnections();
    expect(fake.connections()).toBe(1);
    await fake.close();
  });

  it('a source error with real clamd rejects with that error', async () => {
    const boom = new Error('read failed');
    let sent = 0;
    const source = new Readable({
      read() {
        if (sent++ < 3) this.push(randomBytes(100_000));
        else this.destroy(boom);
      },
    });
    await expect(inspectStream(source, createScanner(socketConfig))).rejects.toBe(boom);
  });
});

// --- helpers for fake clamds --------------------------------------------------------------

interface FakeClamd {
  config: ClamdConfig;
  connections(): number;
  waitForNoConnections(): Promise<void>;
  close(): Promise<void>;
}

async function fakeClamd(onConnection: (socket: net.Socket) => void): Promise<FakeClamd> {
  const open = new Set<net.Socket>();
  let total = 0;
  const server = net.createServer((socket) => {
    total++;
    open.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => open.delete(socket));
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    config: { host: '127.0.0.1', port, timeoutMs: 5000 },
    connections: () => total,
    async waitForNoConnections() {
      // A paused socket never sees the client's FIN/RST; reading lets it notice the close.
      for (const socket of open) socket.resume();
      for (let i = 0; i < 100 && open.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(open.size, 'the client left its clamd connection open').toBe(0);
    },
    close() {
      for (const socket of open) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
