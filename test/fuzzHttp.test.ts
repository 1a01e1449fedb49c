import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../server/main/start.ts';
import { fuzzParameters } from './support/fuzzRuns.ts';
import { hostileString, wireHeaderValue } from './support/hostileStrings.ts';
import { rawRequest, type RawAnswer } from './support/rawHttp.ts';
import { pdf } from './support/samples.ts';
import { createTestEnvironment, setups, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { bearer, mintToken, testAuthSecret } from './support/tokens.ts';
import { uploadIdOf, waitUntilSettled } from './support/uploads.ts';

/**
 * The parsers of client input fuzzed through a real server over HTTP, with header values and
 * bodies no well-behaved client sends (test/support/rawHttp.ts writes them byte for byte): every
 * request is answered, with a 4xx or as handled, never a 5xx, a dropped connection or a hang; the
 * server answers /healthz after each property. FUZZ_RUNS / 20 requests per property (100 by default).
 */
const share = 1 / 20;
/** A property runs its requests one after another: its time is theirs, on however slow a machine. */
const propertyTimeout = 1_200_000;

const b64 = (s: string) => Buffer.from(s).toString('base64');
/** Every byte of `s`'s UTF-8 percent-encoded (encodeURIComponent throws on a lone surrogate). */
const percentEncoded = (s: string) => [...Buffer.from(s, 'utf8')].map((byte) => `%${byte.toString(16).padStart(2, '0')}`).join('');
const pdfMetadata = `filename ${b64('doc.pdf')},filetype ${b64('application/pdf')}`;

/** A header that is absent, well-formed, or hostile. */
const header = (...valid: string[]) =>
  fc.oneof({ arbitrary: fc.constant(undefined), weight: 2 }, { arbitrary: fc.constantFrom(...valid), weight: 3 }, { arbitrary: wireHeaderValue, weight: 3 });
const body = fc.oneof(fc.constant(Buffer.alloc(0)), fc.constant(pdf()), fc.uint8Array({ maxLength: 4096 }).map((bytes) => Buffer.from(bytes)));

function present(headers: Record<string, string | undefined>): Array<[string, string]> {
  return Object.entries(headers).filter((entry): entry is [string, string] => entry[1] !== undefined);
}

/** Whether Node's HTTP parser takes this header value (it answers 400 to control characters but tab). */
const httpLegal = (value: string) => !/[\x00-\x08\x0a-\x1f\x7f]/.test(value);

/** Answered, and not with a 5xx: the reason shows when it is. */
function expectHandled(answer: RawAnswer, what: string): void {
  if (answer.status >= 500) throw new Error(`${what} answered ${answer.status}: ${answer.body.toString('utf8').slice(0, 300)}`);
}

describe.each(setups)('hostile requests over HTTP (%s)', (setup) => {
  let environment: TestEnvironment;
  let server: RunningServer;
  let auth: Record<string, string>;
  let token: string;
  /** A ready PDF of 64 KiB, for downloads. */
  let readyId: string;

  beforeAll(async () => {
    environment = await createTestEnvironment(setup, {
      AUTH_SECRET: testAuthSecret,
      QUOTA_UPLOADS_IN_FLIGHT: '0',
      RATE_LIMIT_UPLOADS: '0',
      // A body shorter than it said is given up on soon, so a request cut by the fuzzer frees its lock.
      PATCH_IDLE_TIMEOUT: '2s',
    });
    server = await startTestServer(environment);
    token = await mintToken('mallory');
    auth = bearer(token);
    readyId = uploadIdOf(await createUploadWith(pdf(64 * 1024)));
    expect((await waitUntilSettled(server.url, readyId, 60_000, auth)).status).toBe('ready');
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
  });

  /** A new PDF upload of the caller's: its path; with `bytes` they are its whole content. */
  async function createUploadWith(bytes: Buffer, length = bytes.length): Promise<string> {
    const created = await rawRequest(server.url, 'POST', '/files/', [
      ['Authorization', `Bearer ${token}`],
      ['Tus-Resumable', '1.0.0'],
      ['Upload-Length', String(length)],
      ['Upload-Metadata', pdfMetadata],
      ['Content-Type', 'application/offset+octet-stream'],
    ], bytes);
    if (created.status !== 201) throw new Error(`creating an upload: ${created.status} ${created.body.toString()}`);
    return new URL(created.headers.location!, server.url).pathname;
  }

  async function expectHealthy(): Promise<void> {
    const res = await fetch(`${server.url}/healthz`);
    expect(res.status).toBe(200);
  }

  it('tus creations with any Upload-Length, Upload-Metadata, Upload-Concat, Upload-Checksum and body', { timeout: propertyTimeout }, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          'Tus-Resumable': fc.oneof({ arbitrary: fc.constant('1.0.0'), weight: 5 }, { arbitrary: wireHeaderValue, weight: 1 }),
          'Upload-Length': header('0', '10', '4096', '9007199254740991', '-1'),
          'Upload-Defer-Length': header('1'),
          'Upload-Metadata': header(pdfMetadata, `filename ${b64('a.jpg')}`, 'filename', `filename ${b64('../../etc/passwd')},filetype ${b64('text/html')}`),
          'Upload-Concat': header('partial', 'final;/files/0123456789abcdef0123456789abcdef', 'final;'),
          'Upload-Checksum': header('sha1 2jmj7l5rSw0yVb/vlWAYkK/YBwk=', 'md5 AAAA'),
          'Content-Type': header('application/offset+octet-stream', 'Application/Offset+Octet-Stream; x=1'),
        }),
        body,
        async (headers, content) => {
          const answer = await rawRequest(server.url, 'POST', '/files/', [['Authorization', `Bearer ${token}`], ...present(headers)], content);
          expectHandled(answer, `POST ${JSON.stringify(headers)}`);
        },
      ),
      fuzzParameters(share),
    );
    await expectHealthy();
  });

  it('tus appends with any Upload-Offset, Upload-Checksum, Content-Type and body, to an upload of its owner', { timeout: propertyTimeout }, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          'Tus-Resumable': fc.oneof({ arbitrary: fc.constant('1.0.0'), weight: 5 }, { arbitrary: wireHeaderValue, weight: 1 }),
          'Upload-Offset': header('0', '1', '100', '99999999999999999999'),
          'Upload-Length': header('4096', '1'),
          'Upload-Checksum': header('sha1 2jmj7l5rSw0yVb/vlWAYkK/YBwk=', 'crc32 AAAAAA==', 'sha256 x'),
          'Content-Type': header('application/offset+octet-stream'),
        }),
        body,
        async (headers, content) => {
          const path = await createUploadWith(Buffer.alloc(0), 4096);
          const answer = await rawRequest(server.url, 'PATCH', path, [['Authorization', `Bearer ${token}`], ...present(headers)], content);
          expectHandled(answer, `PATCH ${JSON.stringify(headers)}`);
        },
      ),
      fuzzParameters(share),
    );
    await expectHealthy();
  });

  it("IETF draft creations and appends with any of the draft's structured fields", { timeout: propertyTimeout }, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          'Upload-Draft-Interop-Version': fc.oneof(fc.constantFrom('3', '4', '5', '6', '7', '8'), wireHeaderValue),
          'Upload-Complete': header('?1', '?0', '?2', '1'),
          'Upload-Incomplete': header('?1', '?0'),
          'Upload-Offset': header('0', '5'),
          'Upload-Length': header('0', '4096'),
          'Content-Type': header('application/partial-upload', 'application/pdf'),
          'Content-Disposition': header('attachment; filename="doc.pdf"', "attachment; filename*=UTF-8''%E2%82%AC.pdf", 'attachment; filename='),
        }),
        fc.constantFrom('POST', 'PATCH', 'HEAD', 'DELETE'),
        body,
        async (headers, method, content) => {
          const path = method === 'POST' ? '/files/' : await createUploadWith(Buffer.alloc(0), 4096);
          const answer = await rawRequest(server.url, method, path, [['Authorization', `Bearer ${token}`], ...present(headers)], method === 'POST' || method === 'PATCH' ? content : undefined);
          expectHandled(answer, `${method} ${JSON.stringify(headers)}`);
        },
      ),
      fuzzParameters(share),
    );
    await expectHealthy();
  });

  it('downloads with any Range and If-Range: the whole file, the one range asked for, or 416', { timeout: propertyTimeout }, async () => {
    const size = 64 * 1024;
    if (setup === 'embedded') {
      // HEAD mirrors GET: a null body used to turn it into a 204 without Content-Length.
      const head = await rawRequest(server.url, 'HEAD', `/api/uploads/${readyId}/files/original`, [['Authorization', `Bearer ${token}`]]);
      expect([head.status, head.headers['content-length']]).toEqual([200, String(size)]);
    }
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(wireHeaderValue, fc.tuple(fc.nat({ max: 2 * size }), fc.nat({ max: 2 * size })).map(([a, b]) => `bytes=${a}-${b}`), fc.nat({ max: 2 * size }).map((n) => `bytes=-${n}`)),
        header('"nope"'),
        fc.constantFrom('GET', 'HEAD'),
        async (range, ifRange, method) => {
          const answer = await rawRequest(server.url, method, `/api/uploads/${readyId}/files/original`, present({ Authorization: `Bearer ${token}`, Range: range, 'If-Range': ifRange }));
          expectHandled(answer, `Range ${JSON.stringify(range)}`);
          if (!httpLegal(range) || !httpLegal(ifRange ?? '')) {
            expect(answer.status).toBe(400);
            return;
          }
          // From S3 a download is a presigned redirect: the bucket answers the Range.
          if (setup === 'scaleout') {
            expect(answer.status).toBe(302);
            return;
          }
          expect([200, 206, 416]).toContain(answer.status);
          if (answer.status === 206) {
            const [, start, end, total] = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(answer.headers['content-range']!)!.map(Number);
            expect(total).toBe(size);
            expect(start).toBeLessThanOrEqual(end!);
            expect(end).toBeLessThan(size);
            if (method === 'GET') expect(answer.body.length).toBe(end! - start! + 1);
          }
          if (answer.status === 200 && method === 'GET') expect(answer.body.length).toBe(size);
        },
      ),
      fuzzParameters(share),
    );
    await expectHealthy();
  });

  it('any Authorization header and any signed-link query is refused (401, 403) unless it holds, never a 5xx', { timeout: propertyTimeout }, async () => {
    const authorization = fc.oneof(
      wireHeaderValue,
      hostileString.map((t) => `Bearer ${Buffer.from(t, 'utf8').toString('latin1').replace(/[\r\n]/g, '')}`),
      fc.constant(`Bearer ${'a'.repeat(8000)}`),
    );
    const query = fc.tuple(hostileString, hostileString).map(([expires, sig]) => `?expires=${percentEncoded(expires)}&sig=${percentEncoded(sig)}`);
    const target = fc.constantFrom('POST /files/', 'GET /api/uploads', `GET /api/uploads/${'0'.repeat(32)}`, 'GET /api/uploads/READY', 'GET /api/uploads/READY/files/original', 'GET /api/uploads/READY/events');
    await fc.assert(
      fc.asyncProperty(authorization, target, fc.option(query, { nil: undefined }), async (value, where, search) => {
        const [method, path] = where.replace('READY', readyId).split(' ') as [string, string];
        const answer = await rawRequest(server.url, method, `${path}${search ?? ''}`, [['Authorization', value], ['Tus-Resumable', '1.0.0'], ['Upload-Length', '10']]);
        expectHandled(answer, `${where} with Authorization ${JSON.stringify(value)}`);
        expect([400, 401, 403, 404, 431]).toContain(answer.status);
      }),
      fuzzParameters(share),
    );
    await expectHealthy();
  });

  it('any path under /files/ and /api/uploads/, with any method', { timeout: propertyTimeout }, async () => {
    const segment = fc.oneof(hostileString.map(percentEncoded), fc.constantFrom('..', '%2e%2e', '%00', readyId, `${readyId}/files/original`, `${readyId}/files/..%2f..%2fpasswd`));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('/files/', '/api/uploads/'), segment, fc.constantFrom('GET', 'HEAD', 'PATCH', 'DELETE', 'OPTIONS', 'POST', 'PUT'), async (base, rest, method) => {
        const path = `${base}${rest}`;
        const answer = await rawRequest(server.url, method, path, [['Authorization', `Bearer ${token}`], ['Tus-Resumable', '1.0.0']]);
        expectHandled(answer, `${method} ${path}`);
      }),
      fuzzParameters(share),
    );
    await expectHealthy();
  });
});
