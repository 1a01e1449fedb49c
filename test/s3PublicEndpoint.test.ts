import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../server/main/start.ts';
import { pdf, sha256 } from './support/samples.ts';
import { testS3 } from './services/env.ts';
import { createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';

/**
 * The server reaches radosgw at 127.0.0.1 and browsers (here: fetch) at localhost: the same
 * service under a second name, as MinIO is `minio:9000` inside Compose and `localhost:9000` outside.
 */
const insideEndpoint = new URL(testS3.endpoint);
const publicEndpoint = new URL(testS3.endpoint);
publicEndpoint.hostname = 'localhost';

describe('S3_PUBLIC_ENDPOINT', () => {
  let environment: TestEnvironment;
  let server: RunningServer;

  beforeAll(async () => {
    expect(insideEndpoint.hostname, 'the test S3 endpoint is an address, so localhost is another name for it').toBe('127.0.0.1');
    environment = await createTestEnvironment('scaleout', { S3_PUBLIC_ENDPOINT: publicEndpoint.origin });
    server = await startTestServer(environment);
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
  });

  it('redirects downloads to a link signed for the public address, which answers with the bytes', async () => {
    const data = pdf(4096);
    const id = uploadIdOf((await tusUpload(server.url, data, { filename: 'doc.pdf' })).url);
    expect((await waitUntilSettled(server.url, id)).status).toBe('ready');

    const answer = await fetch(`${server.url}/api/uploads/${id}/files/original`, { redirect: 'manual' });
    expect(answer.status).toBe(302);
    const location = new URL(answer.headers.get('location')!);
    expect(location.host).toBe(publicEndpoint.host);

    const download = await fetch(location);
    expect(download.status, await download.clone().text()).toBe(200);
    expect(sha256(Buffer.from(await download.arrayBuffer()))).toBe(sha256(data));
  });

  it('signs for the host it names: the same link sent to the inside address is refused', async () => {
    const data = pdf(1024);
    const id = uploadIdOf((await tusUpload(server.url, data, { filename: 'other.pdf' })).url);
    expect((await waitUntilSettled(server.url, id)).status).toBe('ready');
    const location = new URL((await fetch(`${server.url}/api/uploads/${id}/files/original`, { redirect: 'manual' })).headers.get('location')!);
    location.host = insideEndpoint.host;
    expect((await fetch(location)).status).toBe(403);
  });
});
