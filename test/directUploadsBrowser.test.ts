import { existsSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { PutBucketCorsCommand } from '@aws-sdk/client-s3';
import puppeteer, { type Browser, type HTTPRequest, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../server/main/start.ts';
import { testS3, testS3Client } from './services/env.ts';
import { startCuttingProxy, type CuttingProxy } from './support/cuttingProxy.ts';
import { eventually } from './support/eventually.ts';
import { pdf, sha256 } from './support/samples.ts';
import { createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { bearer, mintToken, testAuthSecret } from './support/tokens.ts';
import { fetchStatus } from './support/uploads.ts';
import { h264Clip, makeSampleDir, removeSampleDir } from './support/videoSamples.ts';

const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const MiB = 1024 * 1024;
const settledSelector = ['ready', 'rejected', 'infected', 'failed', 'expired', 'deleted'].map((s) => `#uploads li[data-status="${s}"]`).join(', ');

/**
 * A 60 MiB video: a short real clip (moov first) followed by a `free` box, which MP4 readers skip.
 * The size makes Uppy send 12 parts; the clip keeps processing short on a shared machine.
 */
async function sixtyMiBVideo(dir: string): Promise<string> {
  const file = await h264Clip(dir, { seconds: 2, width: 320, height: 240, faststart: true, name: 'big-video.mp4' });
  const handle = await open(file, 'a');
  const { size } = await handle.stat();
  const padding = 60 * MiB - size;
  const header = Buffer.alloc(8);
  header.writeUInt32BE(padding, 0);
  header.write('free', 4, 'latin1');
  await handle.write(header);
  await handle.write(Buffer.alloc(padding - 8));
  await handle.close();
  return file;
}

/**
 * Uppy 5's `@uppy/aws-s3` on the demo page (`?via=s3`), in headless Chromium, against radosgw:
 * the plugin signs through this server's /s3/ routes with the token and PUTs the parts to the
 * bucket itself, through a proxy (S3_PUBLIC_ENDPOINT) that cuts one part's connection midway.
 */
describe('Uppy AwsS3 (multipart) in Chromium, straight to radosgw', () => {
  let environment: TestEnvironment;
  let server: RunningServer;
  let browser: Browser;
  let proxy: CuttingProxy;
  let samples: string;

  beforeAll(async () => {
    if (!existsSync(chromiumPath)) throw new Error(`Chromium not found at ${chromiumPath}: run \`sudo bash test/services/install.sh\`, or set CHROMIUM_PATH`);
    // The second part's PUT loses its connection after 2 MiB of it went through, three times.
    proxy = await startCuttingProxy(testS3.endpoint, (line) => line.startsWith('PUT ') && /[?&]partNumber=2[& ]/.test(line), 2 * MiB, 3);
    environment = await createTestEnvironment('scaleout', { AUTH_SECRET: testAuthSecret, S3_PUBLIC_ENDPOINT: proxy.url });
    server = await startTestServer(environment);
    // The browser PUTs to the bucket from the page's origin, and Uppy reads each part's ETag.
    const s3 = testS3Client();
    await s3.send(
      new PutBucketCorsCommand({
        Bucket: environment.env.S3_BUCKET!,
        CORSConfiguration: { CORSRules: [{ AllowedOrigins: [server.url], AllowedMethods: ['PUT', 'GET'], AllowedHeaders: ['*'], ExposeHeaders: ['ETag'], MaxAgeSeconds: 3600 }] },
      }),
    );
    s3.destroy();
    samples = await makeSampleDir();
    browser = await puppeteer.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox', '--headless=new', '--disable-gpu', '--disable-dev-shm-usage'] });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await proxy?.close();
    await environment?.destroy();
    if (samples) await removeSampleDir(samples);
  });

  it('uploads a 60 MiB video in parts with the token, retries the part whose connection was cut, and ends ready with the same bytes', { timeout: 240_000 }, async () => {
    const token = await mintToken('alice');
    const file = await sixtyMiBVideo(samples);
    const page: Page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(String(error)));
    const cutParts: string[] = [];
    page.on('requestfailed', (request) => {
      if (request.method() === 'PUT') cutParts.push(new URL(request.url()).searchParams.get('partNumber')!);
    });
    const signing: (string | undefined)[] = [];
    const partPuts: string[] = [];
    page.on('request', (request: HTTPRequest) => {
      const url = new URL(request.url());
      if (url.pathname.startsWith('/s3/') && request.method() !== 'OPTIONS') signing.push(request.headers().authorization);
      if (url.origin === proxy.url && request.method() === 'PUT') partPuts.push(url.searchParams.get('partNumber')!);
    });
    await page.goto(`${server.url}/?via=s3`, { waitUntil: 'load' });
    await page.waitForSelector('body[data-direct="on"]');
    expect(await page.$eval('#via', (form) => (form as HTMLFormElement).hidden)).toBe(false);
    await page.type('#token', token);
    const input = await page.waitForSelector('.uppy-Dashboard input[type=file]:not([webkitdirectory])');
    await input!.uploadFile(file);

    const item = await page.waitForSelector(settledSelector, { timeout: 200_000 });
    const shown = await item!.evaluate((li) => ({ id: li.getAttribute('data-upload-id')!, status: li.getAttribute('data-status') }));
    expect(errors).toEqual([]);
    expect(shown.status).toBe('ready');
    expect(proxy.cuts()).toBe(3);
    // Twelve parts of 5 MiB, the second sent again by Uppy after its connections were cut.
    expect(new Set(cutParts)).toEqual(new Set(['2']));
    expect(partPuts.filter((n) => n === '2').length).toBeGreaterThanOrEqual(2);
    expect(new Set(partPuts).size).toBe(12);
    expect(signing.length).toBeGreaterThan(12);
    expect(new Set(signing)).toEqual(new Set([`Bearer ${token}`]));

    const bytes = await readFile(file);
    const status = await fetchStatus(server.url, shown.id, bearer(token));
    expect(status).toMatchObject({ status: 'ready', protocol: 's3-multipart', owner: 'alice', filename: path.basename(file), detectedType: 'video/mp4', size: bytes.length, sha256: sha256(bytes) });
    expect(status.outputs.map((o) => o.name)).toEqual(expect.arrayContaining(['mp4', 'poster', 'thumbnail']));
    await page.close();
  });

  it("works with the app's own signing functions calling the routes with the token (how Uppy 6 is used)", { timeout: 120_000 }, async () => {
    const token = await mintToken('bob');
    const data = pdf(6 * MiB);
    const page: Page = await browser.newPage();
    await page.goto(`${server.url}/?via=s3`, { waitUntil: 'load' });
    const uploadURL = await page.evaluate(
      async (token, base64) => {
        const { Uppy, AwsS3 } = (window as unknown as { Uppy: Record<string, any> }).Uppy;
        const api = async (method: string, path: string, body?: unknown) => {
          const res = await fetch(path, { method, headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
          if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
          return res.json();
        };
        const route = (o: { uploadId: string }) => `/s3/multipart/${encodeURIComponent(o.uploadId)}`;
        const uppy = new Uppy().use(AwsS3, {
          shouldUseMultipart: true,
          createMultipartUpload: (file: { name: string; type: string; size: number }) => api('POST', '/s3/multipart', { filename: file.name, type: file.type, metadata: { size: file.size } }),
          signPart: (_file: unknown, o: { uploadId: string; key: string; partNumber: number }) => api('GET', `${route(o)}/${o.partNumber}?key=${o.key}`),
          listParts: (_file: unknown, o: { uploadId: string; key: string }) => api('GET', `${route(o)}?key=${o.key}`),
          completeMultipartUpload: (_file: unknown, o: { uploadId: string; key: string; parts: unknown }) => api('POST', `${route(o)}/complete?key=${o.key}`, { parts: o.parts }),
          abortMultipartUpload: (_file: unknown, o: { uploadId: string; key: string }) => api('DELETE', `${route(o)}?key=${o.key}`),
        });
        const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
        uppy.addFile({ name: 'own-functions.pdf', type: 'application/pdf', data: new Blob([bytes], { type: 'application/pdf' }) });
        const result = await uppy.upload();
        if (result.failed.length > 0) throw new Error(String(result.failed[0].error));
        return result.successful[0].response.uploadURL as string;
      },
      token,
      data.toString('base64'),
    );
    const id = uploadURL.split('/').pop()!;
    expect(uploadURL).toBe(`${server.url}/api/uploads/${id}`);
    await eventually('the upload ready', async () => (await fetchStatus(server.url, id, bearer(token))).status === 'ready', 60_000, 200);
    expect(await fetchStatus(server.url, id, bearer(token))).toMatchObject({ protocol: 's3-multipart', owner: 'bob', size: data.length, sha256: sha256(data) });
    await page.close();
  });
});
