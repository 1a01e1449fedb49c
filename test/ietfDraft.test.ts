import * as tus from 'tus-js-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../server/main/start.ts';
import { draftRequest, type DraftAnswer } from './support/draftRequests.ts';
import { eventually } from './support/eventually.ts';
import { pdf, png, sha256 } from './support/samples.ts';
import { createTestEnvironment, setups, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { bearer, mintToken, testAuthSecret } from './support/tokens.ts';
import { fetchStatus, uploadIdOf, waitUntilSettled } from './support/uploads.ts';

/** How each interop version says "this request (or upload) is complete". */
const completeness = (version: number, complete: boolean): [string, string] =>
  version === 3 ? ['upload-incomplete', complete ? '?0' : '?1'] : ['upload-complete', complete ? '?1' : '?0'];
/** Drafts -04.. (interop 6..) append with Content-Type: application/partial-upload. */
const appendType = (version: number): Record<string, string> => (version >= 6 ? { 'Content-Type': 'application/partial-upload' } : {});
const versions = [3, 4, 5, 6, 7, 8];

describe.each(setups)('the IETF resumable-upload draft on /files/ (%s)', (setup) => {
  let environment: TestEnvironment;
  let server: RunningServer;
  let auth: Record<string, string>;

  beforeAll(async () => {
    environment = await createTestEnvironment(setup, { AUTH_SECRET: testAuthSecret });
    server = await startTestServer(environment);
    auth = bearer(await mintToken('alice'));
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
  });

  const draft = (version: number, more: Record<string, string | number> = {}) => ({ ...auth, 'Upload-Draft-Interop-Version': version, ...more });
  const create = (version: number, body: Buffer, complete: boolean, more: Record<string, string | number> = {}) =>
    draftRequest(`${server.url}/files/`, 'POST', draft(version, { [completeness(version, complete)[0]]: completeness(version, complete)[1], ...more }), body);

  async function expectReady(location: string, data: Buffer) {
    const status = await waitUntilSettled(server.url, uploadIdOf(location), 30_000, auth);
    expect(status).toMatchObject({ status: 'ready', sha256: sha256(data), size: data.length });
    return status;
  }

  it.each(versions)('interop %i: creation with the whole file answers 104 with Location first, then 201 with the same Location; it ends ready', async (version) => {
    const data = png();
    const answer = await create(version, data, true, { 'Content-Disposition': `inline; filename="photo ${version}.png"` });
    expect(answer.status, answer.text).toBe(201);
    expect(answer.interim).toHaveLength(1);
    const [interim] = answer.interim;
    expect(interim!.status).toBe(104);
    expect(interim!.headers['upload-draft-interop-version']).toBe(String(version));
    expect(interim!.headers.location).toMatch(new RegExp(`^${server.url}/files/[0-9a-f]{32}$`));
    expect(answer.headers.location).toBe(interim!.headers.location);
    expect(answer.headers[completeness(version, true)[0]]).toBe(completeness(version, true)[1]);
    expect(answer.headers['tus-resumable']).toBeUndefined();
    if (version >= 6) {
      expect(interim!.headers['upload-limit']).toMatch(/max-size=\d+, min-size=1, (expires|max-age)=\d+/);
      expect(interim!.headers['upload-limit']).toContain(version === 6 ? 'expires=' : 'max-age=');
      expect(answer.headers['upload-limit']).toBe(interim!.headers['upload-limit']);
    } else {
      expect(interim!.headers['upload-limit']).toBeUndefined();
    }
    const status = await expectReady(answer.headers.location!, data);
    // No tus metadata: the name is Content-Disposition's, the type the bytes'.
    expect(status).toMatchObject({ filename: `photo ${version}.png`, claimedType: null, detectedType: 'image/png', owner: 'alice' });
  });

  it.each(versions)('interop %i: created incomplete, HEAD tells the offset, a wrong offset is 409 with the right one, the rest completes it', async (version) => {
    const data = pdf(30_000);
    const created = await create(version, data.subarray(0, 10_000), false, version >= 6 ? { 'Upload-Length': data.length } : {});
    expect(created.status, created.text).toBe(201);
    expect(created.headers[completeness(version, false)[0]]).toBe(completeness(version, false)[1]);
    expect(created.headers['upload-offset']).toBe('10000');
    const url = created.headers.location!;
    expect(created.interim[0]!.headers.location).toBe(url);

    const head = await draftRequest(url, 'HEAD', draft(version));
    expect(head.status).toBe(204);
    expect(head.headers).toMatchObject({ 'upload-offset': '10000', 'cache-control': 'no-store' });
    expect(head.headers[completeness(version, false)[0]]).toBe(completeness(version, false)[1]);
    if (version >= 6) {
      expect(head.headers['upload-length']).toBe(String(data.length));
      expect(head.headers['upload-limit']).toMatch(/^max-size=\d+, min-size=1, (expires|max-age)=\d+$/);
    }

    const wrong = await draftRequest(url, 'PATCH', draft(version, { ...appendType(version), 'Upload-Offset': 5000, [completeness(version, false)[0]]: completeness(version, false)[1] }), data.subarray(5000, 8000));
    expect(wrong.status).toBe(409);
    expect(wrong.headers['upload-offset']).toBe('10000');
    if (version >= 6) {
      expect(wrong.headers['content-type']).toBe('application/problem+json');
      expect(JSON.parse(wrong.text)).toMatchObject({
        type: 'https://iana.org/assignments/http-problem-types#mismatching-upload-offset',
        'expected-offset': 10_000,
        'provided-offset': 5000,
      });
    }

    const middle = await draftRequest(url, 'PATCH', draft(version, { ...appendType(version), 'Upload-Offset': 10_000, [completeness(version, false)[0]]: completeness(version, false)[1] }), data.subarray(10_000, 20_000));
    expect(middle.status, middle.text).toBe(version <= 6 ? 201 : 204);
    expect(middle.headers['upload-offset']).toBe('20000');
    expect(middle.headers[completeness(version, false)[0]]).toBe(completeness(version, false)[1]);

    const last = await draftRequest(url, 'PATCH', draft(version, { ...appendType(version), 'Upload-Offset': 20_000, [completeness(version, true)[0]]: completeness(version, true)[1] }), data.subarray(20_000));
    expect(last.status, last.text).toBe(version <= 6 ? 201 : 204);
    expect(last.headers[completeness(version, true)[0]]).toBe(completeness(version, true)[1]);
    await expectReady(url, data);

    const again = await draftRequest(url, 'HEAD', draft(version));
    expect(again.headers['upload-offset']).toBe(String(data.length));
    expect(again.headers[completeness(version, true)[0]]).toBe(completeness(version, true)[1]);
  });

  it('a creation of unknown length (chunked, Upload-Complete: ?1) takes the length it ended at', async () => {
    const data = pdf(50_000);
    const answer = await draftRequest(`${server.url}/files/`, 'POST', draft(8, { 'Upload-Complete': '?1', 'Transfer-Encoding': 'chunked' }), (req) => {
      req.write(data.subarray(0, 20_000));
      setTimeout(() => req.end(data.subarray(20_000)), 50);
    });
    expect(answer.status, answer.text).toBe(201);
    expect(answer.headers['upload-complete']).toBe('?1');
    expect(answer.interim[0]!.status).toBe(104);
    await expectReady(answer.headers.location!, data);
  });

  it('an upload of unknown length is completed by an append of unknown length', async () => {
    const data = pdf(30_000);
    const created = await create(7, data.subarray(0, 12_000), false);
    const url = created.headers.location!;
    const head = await draftRequest(url, 'HEAD', draft(7));
    expect(head.headers['upload-length']).toBeUndefined();
    const last = await draftRequest(url, 'PATCH', draft(7, { ...appendType(7), 'Upload-Offset': 12_000, 'Upload-Complete': '?1', 'Transfer-Encoding': 'chunked' }), data.subarray(12_000));
    expect(last.status, last.text).toBe(204);
    expect(last.headers['upload-complete']).toBe('?1');
    await expectReady(url, data);
  });

  it('refuses versions it does not speak with 400 naming the ones it does', async () => {
    for (const version of ['2', '9', 'seven']) {
      const answer = await draftRequest(`${server.url}/files/`, 'POST', { ...auth, 'Upload-Draft-Interop-Version': version, 'Upload-Complete': '?1' }, png());
      expect(answer.status).toBe(400);
      expect(answer.text).toContain('3, 4, 5, 6, 7, 8');
      expect(answer.interim).toEqual([]);
    }
  });

  it('refuses what each version forbids: no completeness, no partial-upload type, state fields on HEAD', async () => {
    const noCompleteness = await draftRequest(`${server.url}/files/`, 'POST', draft(8), png());
    expect(noCompleteness.status).toBe(400);
    expect(noCompleteness.interim).toEqual([]);

    const url = (await create(7, pdf(20_000).subarray(0, 5000), false)).headers.location!;
    // -06..: "The request MUST include the `Upload-Complete` header field."
    const noComplete = await draftRequest(url, 'PATCH', draft(7, { ...appendType(7), 'Upload-Offset': 5000 }), Buffer.alloc(10));
    expect(noComplete.status).toBe(400);
    expect(noComplete.headers['upload-complete']).toBe('?0');
    // -04..: PATCH "with the `application/partial-upload` media type".
    const wrongType = await draftRequest(url, 'PATCH', draft(6, { 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': 5000, 'Upload-Complete': '?0' }), Buffer.alloc(10));
    expect(wrongType.status).toBe(415);
    // -01..-05: HEAD "MUST NOT include an `Upload-Offset` or `Upload-Complete` header field".
    const stateOnHead = await draftRequest(url, 'HEAD', draft(5, { 'Upload-Offset': 0 }));
    expect(stateOnHead.status).toBe(400);
    const head = await draftRequest(url, 'HEAD', draft(5));
    expect(head.headers['upload-offset']).toBe('5000');
  });

  it('appends to a completed upload are refused with the problem type of the version', async () => {
    const data = pdf(8000);
    const url = (await create(8, data, true)).headers.location!;
    await expectReady(url, data);
    const v6 = await draftRequest(url, 'PATCH', draft(6, { ...appendType(6), 'Upload-Offset': data.length, 'Upload-Complete': '?1' }), Buffer.alloc(100));
    expect(v6.status).toBe(400);
    expect(JSON.parse(v6.text).type).toBe('https://iana.org/assignments/http-problem-types#completed-upload');
    const v8 = await draftRequest(url, 'PATCH', draft(8, { ...appendType(8), 'Upload-Offset': data.length, 'Upload-Complete': '?1' }), Buffer.alloc(100));
    expect(v8.status).toBe(400);
    expect(JSON.parse(v8.text).type).toBe('https://iana.org/assignments/http-problem-types#inconsistent-upload-length');
    // Completing it again with nothing changes nothing: the answer the completing request had.
    const empty = await draftRequest(url, 'PATCH', draft(8, { ...appendType(8), 'Upload-Offset': data.length, 'Upload-Complete': '?1' }), Buffer.alloc(0));
    expect(empty.status).toBe(204);
    expect(empty.headers['upload-complete']).toBe('?1');
    expect((await fetchStatus(server.url, uploadIdOf(url), auth)).sha256).toBe(sha256(data));
  });

  it('a length an append indicates must agree with the one the upload has', async () => {
    const data = pdf(20_000);
    const url = (await create(8, data.subarray(0, 5000), false, { 'Upload-Length': data.length })).headers.location!;
    const longer = await draftRequest(url, 'PATCH', draft(8, { ...appendType(8), 'Upload-Offset': 5000, 'Upload-Complete': '?1' }), Buffer.concat([data.subarray(5000), Buffer.alloc(10)]));
    expect(longer.status).toBe(400);
    expect(JSON.parse(longer.text).type).toBe('https://iana.org/assignments/http-problem-types#inconsistent-upload-length');
    const head = await draftRequest(url, 'HEAD', draft(8));
    expect(head.headers['upload-offset']).toBe('5000');
  });

  it('needs the token, and another owner\'s upload is the same 404 as an unknown one', async () => {
    const noToken = await draftRequest(`${server.url}/files/`, 'POST', { 'Upload-Draft-Interop-Version': 8, 'Upload-Complete': '?1' }, png());
    expect(noToken.status).toBe(401);
    expect(noToken.interim).toEqual([]);

    const url = (await create(8, pdf(20_000).subarray(0, 5000), false)).headers.location!;
    const bob = { ...bearer(await mintToken('bob')), 'Upload-Draft-Interop-Version': 8 };
    const unknown = `${server.url}/files/${'0'.repeat(32)}`;
    for (const target of [url, unknown]) {
      const head = await draftRequest(target, 'HEAD', bob);
      expect(head.status).toBe(404);
      const append = await draftRequest(target, 'PATCH', { ...bob, ...appendType(8), 'Upload-Offset': 5000, 'Upload-Complete': '?0' }, Buffer.alloc(10));
      expect([append.status, append.text]).toEqual([404, 'The file for this url was not found\n']);
      const cancel = await draftRequest(target, 'DELETE', bob);
      expect(cancel.status).toBe(404);
    }
    const head = await draftRequest(url, 'HEAD', draft(8));
    expect(head.headers['upload-offset']).toBe('5000');
  });

  it('DELETE cancels the upload', async () => {
    const url = (await create(8, pdf(20_000).subarray(0, 5000), false)).headers.location!;
    const cancel = await draftRequest(url, 'DELETE', draft(8));
    expect(cancel.status).toBe(204);
    // The termination is recorded as @tus/server reports it, just after its answer.
    await eventually('the upload recorded deleted', async () => (await fetchStatus(server.url, uploadIdOf(url), auth)).status === 'deleted');
    const head = await draftRequest(url, 'HEAD', draft(8));
    expect(head.status).toBe(410);
  });

  it('a new request to the upload ends the one still sending to it, which keeps what it wrote', async () => {
    const data = pdf(40_000);
    const url = (await create(8, data.subarray(0, 5000), false, { 'Upload-Length': data.length })).headers.location!;
    let stalled!: Promise<DraftAnswer | Error>;
    await new Promise<void>((sent) => {
      stalled = draftRequest(url, 'PATCH', draft(8, { ...appendType(8), 'Upload-Offset': 5000, 'Upload-Complete': '?1', 'Content-Length': data.length - 5000 }), (req) => {
        // Half the rest, then nothing: the client has given up on it, the server does not know.
        req.write(data.subarray(5000, 20_000), () => setTimeout(sent, 300));
      }).catch((error: Error) => error);
    });
    const head = await draftRequest(url, 'HEAD', draft(8));
    expect(head.status).toBe(204);
    const offset = Number(head.headers['upload-offset']);
    expect(offset).toBe(20_000);
    // The stalled request was ended: answered (or its connection closed) without waiting for its body.
    const ended = await Promise.race([stalled, new Promise((r) => setTimeout(() => r('still open'), 5000))]);
    expect(ended).not.toBe('still open');
    const rest = await draftRequest(url, 'PATCH', draft(8, { ...appendType(8), 'Upload-Offset': offset, 'Upload-Complete': '?1' }), data.subarray(offset));
    expect(rest.status, rest.text).toBe(204);
    await expectReady(url, data);
  });

  it('an append of unknown length that a new request ends does not complete the upload', async () => {
    const data = pdf(40_000);
    const url = (await create(8, data.subarray(0, 5000), false)).headers.location!;
    let stalled!: Promise<DraftAnswer | Error>;
    await new Promise<void>((sent) => {
      stalled = draftRequest(url, 'PATCH', draft(8, { ...appendType(8), 'Upload-Offset': 5000, 'Upload-Complete': '?1', 'Transfer-Encoding': 'chunked' }), (req) => {
        req.write(data.subarray(5000, 20_000), () => setTimeout(sent, 300));
      }).catch((error: Error) => error);
    });
    const head = await draftRequest(url, 'HEAD', draft(8));
    expect(head.headers).toMatchObject({ 'upload-offset': '20000', 'upload-complete': '?0' });
    expect(head.headers['upload-length']).toBeUndefined();
    await stalled;
    expect((await fetchStatus(server.url, uploadIdOf(url), auth)).status).toBe('uploading');
    const rest = await draftRequest(url, 'PATCH', draft(8, { ...appendType(8), 'Upload-Offset': 20_000, 'Upload-Complete': '?1' }), data.subarray(20_000));
    expect(rest.status, rest.text).toBe(204);
    await expectReady(url, data);
  });

  it('OPTIONS names the partial-upload type and the limits', async () => {
    const answer = await draftRequest(`${server.url}/files/`, 'OPTIONS', { 'Upload-Draft-Interop-Version': 8 });
    expect(answer.headers['accept-patch']).toBe('application/partial-upload');
    expect(answer.headers['upload-limit']).toMatch(/^max-size=\d+, min-size=1$/);
    // A page on another origin may send the draft's fields and read the answer's.
    const preflight = await draftRequest(`${server.url}/files/`, 'OPTIONS', { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'upload-complete, upload-draft-interop-version' });
    expect(preflight.headers['access-control-allow-headers']).toContain('Upload-Complete');
    expect(preflight.headers['access-control-allow-headers']).toContain('Upload-Draft-Interop-Version');
    const created = await create(8, png(), true, { Origin: 'https://app.example' });
    expect(created.headers['access-control-expose-headers']).toContain('Upload-Complete');
    expect(created.headers['access-control-expose-headers']).toContain('Upload-Limit');
  });

  it.each(['ietf-draft-03', 'ietf-draft-05'] as const)('tus-js-client with protocol %s uploads in chunks to ready', async (protocol) => {
    const data = pdf(200_000);
    const url = await new Promise<string>((resolve, reject) => {
      // tus-js-client 4.3 takes `protocol` but its type declarations do not list it.
      const options: tus.UploadOptions & { protocol: string } = {
        endpoint: `${server.url}/files/`,
        protocol,
        chunkSize: 64 * 1024,
        retryDelays: [],
        headers: { ...auth, 'Content-Disposition': 'inline; filename="report.pdf"' },
        onSuccess: () => resolve(upload.url!),
        onError: reject,
      };
      const upload: tus.Upload = new tus.Upload(data, options);
      upload.start();
    });
    const status = await expectReady(url, data);
    expect(status).toMatchObject({ filename: 'report.pdf', detectedType: 'application/pdf' });
  });
});
