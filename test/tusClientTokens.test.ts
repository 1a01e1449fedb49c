import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../server/main/start.ts';
import { png } from './support/samples.ts';
import { createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { bearer, mintToken, testAuthSecret } from './support/tokens.ts';
import { tusRefusal, tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';

/** tus-js-client, as an app's Node or browser code uses it, against a server that verifies tokens (AUTH_SECRET). */
describe('tus-js-client with a Bearer token', () => {
  let environment: TestEnvironment;
  let server: RunningServer;

  beforeAll(async () => {
    environment = await createTestEnvironment('embedded', { AUTH_SECRET: testAuthSecret });
    server = await startTestServer(environment);
  });
  afterAll(async () => {
    await server?.close();
    await environment?.destroy();
  });

  it('uploads through its headers option; the status API with the same token shows it ready and owned', { timeout: 60_000 }, async () => {
    const token = await mintToken('alice');
    const { url } = await tusUpload(server.url, png(), { filename: 'photo.png', filetype: 'image/png', headers: bearer(token) });
    const status = await waitUntilSettled(server.url, uploadIdOf(url), 30_000, bearer(token));
    expect(status).toMatchObject({ status: 'ready', owner: 'alice', filename: 'photo.png', detectedType: 'image/png' });

    const listed = await fetch(`${server.url}/api/uploads`, { headers: bearer(token) });
    expect(listed.status).toBe(200);
    const { items } = (await listed.json()) as { items: { id: string; owner: string }[] };
    expect(items.map((u) => [u.id, u.owner])).toEqual([[uploadIdOf(url), 'alice']]);
  });

  it('is refused with 401 and WWW-Authenticate: Bearer without a token', async () => {
    const refusal = await tusRefusal(tusUpload(server.url, png(), { filename: 'photo.png', filetype: 'image/png' }));
    expect(refusal.status).toBe(401);
    expect(refusal.header('WWW-Authenticate')).toBe('Bearer');
  });
});
