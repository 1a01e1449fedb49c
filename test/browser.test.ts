import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import puppeteer, { type Browser, type BrowserContext, type HTTPRequest, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../server/main/start.ts';
import { eventually } from './support/eventually.ts';
import { phoneM4a } from './support/audioSamples.ts';
import { cameraJpeg, makeSampleDir } from './support/imageSamples.ts';
import { pdf, sha256 } from './support/samples.ts';
import { createTestEnvironment, startTestServer, type TestEnvironment } from './support/testServer.ts';
import { bearer, mintToken, testAuthSecret } from './support/tokens.ts';
import { repoRoot } from './services/env.ts';
import { fetchStatus } from './support/uploads.ts';

/** What the demo page puts on `window` (see server/routes/demo.html), as far as these tests use it. */
interface DemoWindow {
  uppy: {
    getFiles(): {
      id: string;
      progress: { bytesUploaded: number | false; uploadComplete?: boolean };
      response?: { uploadURL?: string };
      tus?: { uploadUrl?: string | null };
    }[];
    pauseResume(fileId: string): boolean | undefined;
    on(event: 'upload-progress', handler: (file: { id: string } | undefined, progress: { bytesUploaded: number }) => void): void;
  };
  /** Set by the resume test: bytes Uppy had sent when it paused the upload. */
  pausedAt?: number;
}

const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Screenshots of the page, kept for a person to look at (gitignored). */
const artifactsDir = path.join(repoRoot, 'test-artifacts');
const settledSelector = ['ready', 'rejected', 'infected', 'failed', 'expired', 'deleted'].map((s) => `#uploads li[data-status="${s}"]`).join(', ');

/** The Uppy demo page at GET /, driven by a real (headless) Chromium. */
describe('Uppy demo page in Chromium', () => {
  let environment: TestEnvironment;
  let server: RunningServer;
  let browser: Browser;
  let samples: { dir: string; cleanup: () => Promise<void> };

  beforeAll(async () => {
    await mkdir(artifactsDir, { recursive: true });
    if (!existsSync(chromiumPath)) {
      throw new Error(`Chromium not found at ${chromiumPath}: run \`sudo bash test/services/install.sh\` (Debian's chromium package), or set CHROMIUM_PATH`);
    }
    environment = await createTestEnvironment('embedded');
    server = await startTestServer(environment);
    samples = await makeSampleDir();
    // headless: true is --headless=new; no sandbox because the tests run as root.
    browser = await puppeteer.launch({
      executablePath: chromiumPath,
      headless: true,
      args: ['--no-sandbox', '--headless=new', '--disable-gpu', '--disable-dev-shm-usage'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await environment?.destroy();
    await samples?.cleanup();
  });

  async function openDemo(query = '', baseUrl = server.url, context: Browser | BrowserContext = browser): Promise<Page> {
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(String(error)));
    const res = await page.goto(`${baseUrl}/${query}`, { waitUntil: 'load' });
    expect(res?.status()).toBe(200);
    await page.waitForSelector('.uppy-Dashboard');
    // The page has asked /readyz whether this server wants a token.
    await page.waitForSelector('body[data-auth]');
    expect(errors).toEqual([]);
    return page;
  }

  /** Whether the token field shows, and the thumbnail of an upload once it has loaded (its src and pixel width). */
  const tokenFieldShown = (page: Page) => page.$eval('#auth', (form) => !(form as HTMLFormElement).hidden);
  async function loadedThumbnail(page: Page, id: string): Promise<{ src: string; width: number }> {
    const img = await page.waitForSelector(`li[data-upload-id="${id}"] img.preview`);
    await page.waitForFunction((el) => (el as HTMLImageElement).complete, {}, img);
    return img!.evaluate((el) => ({ src: (el as HTMLImageElement).src, width: (el as HTMLImageElement).naturalWidth }));
  }

  /** Adds a file through the Dashboard's file picker; Uppy uploads it at once (autoProceed). */
  async function addFile(page: Page, file: string): Promise<void> {
    const input = await page.waitForSelector('.uppy-Dashboard input[type=file]:not([webkitdirectory])');
    await input!.uploadFile(file);
  }

  /** Waits for the page's list to show the upload settled; returns its id and status as the page shows them. */
  async function settledOnPage(page: Page): Promise<{ id: string; status: string; links: string[] }> {
    const item = await page.waitForSelector(settledSelector, { timeout: 90_000 });
    return item!.evaluate((li) => ({
      id: li.getAttribute('data-upload-id') ?? '',
      status: li.getAttribute('data-status') ?? '',
      links: Array.from(li.querySelectorAll('a'), (a) => a.textContent ?? ''),
    }));
  }

  function uppyFiles(page: Page) {
    return page.evaluate(() => (window as unknown as DemoWindow).uppy.getFiles().map((f) => ({ complete: f.progress.uploadComplete === true, url: f.response?.uploadURL })));
  }

  it('serves the page and the Uppy bundle with their types and cache headers', async () => {
    const html = await fetch(`${server.url}/`);
    expect(html.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(await html.text()).toContain('/assets/uppy.min.js');
    for (const [name, type] of [['uppy.min.js', 'text/javascript; charset=utf-8'], ['uppy.min.css', 'text/css; charset=utf-8'], ['thumbhash.js', 'text/javascript; charset=utf-8']] as const) {
      const res = await fetch(`${server.url}/assets/${name}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe(type);
      expect(res.headers.get('cache-control')).toBe('public, max-age=3600');
      const again = await fetch(`${server.url}/assets/${name}`, { headers: { 'If-None-Match': res.headers.get('etag')! } });
      expect(again.status).toBe(304);
    }
    expect((await fetch(`${server.url}/assets/package.json`)).status).toBe(404);
  });

  it('uploads a camera JPEG through the Dashboard and shows it ready with its outputs', { timeout: 120_000 }, async () => {
    const file = await cameraJpeg(samples.dir, 1200, 900);
    const page = await openDemo();
    // The server runs open: nothing to paste.
    expect(await tokenFieldShown(page)).toBe(false);
    await addFile(page, file);

    const shown = await settledOnPage(page);
    expect(shown.status).toBe('ready');
    expect(shown.links.sort()).toEqual(['original', 'resized', 'thumbnail', 'webp']);
    expect((await loadedThumbnail(page, shown.id)).width).toBeGreaterThan(0);
    const [uploaded] = await uppyFiles(page);
    expect(uploaded).toEqual({ complete: true, url: `${server.url}/files/${shown.id}` });

    const status = await fetchStatus(server.url, shown.id);
    const bytes = await readFile(file);
    expect(status).toMatchObject({ status: 'ready', detectedType: 'image/jpeg', filename: path.basename(file), size: bytes.length, sha256: sha256(bytes) });
    expect(status.outputs.map((o) => o.name).sort()).toEqual(['resized', 'thumbnail', 'webp']);
    const original = await fetch(status.links.original!);
    expect(sha256(Buffer.from(await original.arrayBuffer()))).toBe(sha256(bytes));
    await page.close();
  });

  it('paints the thumbhash placeholder before the thumbnail arrives', { timeout: 120_000 }, async () => {
    const page = await openDemo();
    // The thumbnail is held back until the placeholder has been checked.
    await page.setRequestInterception(true);
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    page.on('request', (request) => {
      if (/\/files\/thumbnail(\?|$)/.test(request.url())) void held.then(() => request.continue());
      else void request.continue();
    });
    await addFile(page, await cameraJpeg(samples.dir, 800, 600, 'placeholder.jpg'));
    const shown = await settledOnPage(page);
    expect(shown.status).toBe('ready');
    const img = await page.waitForSelector(`li[data-upload-id="${shown.id}"] img.preview`);
    const before = await img!.evaluate((el) => ({ background: el.style.backgroundImage, complete: (el as HTMLImageElement).complete }));
    expect(before.complete).toBe(false);
    expect(before.background).toMatch(/^url\("data:image\/png;base64,/);
    release();
    expect((await loadedThumbnail(page, shown.id)).width).toBeGreaterThan(0);
    await page.close();
  });

  it('plays a voice note on its tile and in the list', { timeout: 120_000 }, async () => {
    const page = await openDemo();
    await addFile(page, await phoneM4a(samples.dir));
    const shown = await settledOnPage(page);
    expect(shown.status).toBe('ready');
    expect(shown.links.sort()).toEqual(['audio', 'original', 'waveform']);
    await page.waitForSelector('.uppy-Dashboard-Item audio');
    for (const selector of [`li[data-upload-id="${shown.id}"] audio`, '.uppy-Dashboard-Item audio']) {
      const audio = await page.waitForSelector(selector);
      await audio!.evaluate((el) => {
        const player = el as HTMLAudioElement;
        player.muted = true;
        return player.play();
      });
      await page.waitForFunction((el) => (el as HTMLAudioElement).currentTime > 0.5, { timeout: 30_000 }, audio);
      await audio!.evaluate((el) => (el as HTMLAudioElement).pause());
    }
    await page.close();
  });

  it("shows each file's state on its own tile: a disguised PDF's reason, a ready image's thumbnail (screenshot kept)", { timeout: 120_000 }, async () => {
    const disguised = path.join(samples.dir, 'photo.jpg');
    await writeFile(disguised, pdf(20_000));
    const photo = await cameraJpeg(samples.dir, 1000, 750, 'holiday.jpg');
    const page = await openDemo();
    // The intro says what is on: this server scans (clamd is configured in the tests).
    expect(await page.$eval('body', (body) => body.dataset.scan)).toBe('on');
    expect(await page.$eval('#scanning', (el) => el.textContent)).toBe('scanned for viruses by ClamAV');
    // The stream, not polling: no GET of the status API once a stream is open.
    const statusPolls: string[] = [];
    page.on('request', (request: HTTPRequest) => {
      if (/^\/api\/uploads\/[^/]+$/.test(new URL(request.url()).pathname)) statusPolls.push(request.url());
    });
    const input = await page.waitForSelector('.uppy-Dashboard input[type=file]:not([webkitdirectory])');
    await input!.uploadFile(disguised, photo);

    const rejected = await page.waitForSelector('#uploads li[data-status="rejected"]', { timeout: 90_000 });
    const ready = await page.waitForSelector('#uploads li[data-status="ready"]', { timeout: 90_000 });
    const [rejectedFile, readyFile] = await Promise.all([rejected!.evaluate((li) => li.getAttribute('data-file-id')), ready!.evaluate((li) => li.getAttribute('data-file-id'))]);
    const rejectedId = await rejected!.evaluate((li) => li.getAttribute('data-upload-id'));
    const status = await fetchStatus(server.url, rejectedId!);
    expect(status).toMatchObject({ status: 'rejected', claimedType: 'image/jpeg', detectedType: 'application/pdf' });
    expect(await rejected!.$eval('.reason', (el) => el.textContent)).toBe(status.reason);

    // The rejected file's tile: red with the reason on it, not a green "Upload complete", and no Retry.
    const rejectedTile = `[id="uppy_${rejectedFile!}"]`;
    await page.waitForFunction((selector) => document.querySelector(`${selector} .upload-state`)?.textContent?.startsWith('rejected: '), {}, rejectedTile);
    const tile = await page.$eval(rejectedTile, (el) => ({
      classes: el.className,
      state: el.querySelector('.upload-state')?.textContent,
      retryShown: Array.from(el.querySelectorAll('.uppy-Dashboard-Item-progressIndicator')).some((b) => (b as HTMLElement).offsetParent !== null),
    }));
    expect(tile.state).toBe(`rejected: ${status.reason}`);
    expect(tile.classes).toContain('is-error');
    expect(tile.classes).not.toContain('is-complete');
    expect(tile.retryShown).toBe(false);
    expect(await page.$$('.uppy-StatusBar-actionBtn--retry')).toHaveLength(0);

    // The ready image: its tile says so and shows the server's thumbnail (a signed or plain output link).
    const readyTile = `[id="uppy_${readyFile!}"]`;
    await page.waitForFunction((selector) => document.querySelector(`${selector} .upload-state`)?.textContent === 'ready', {}, readyTile);
    const readyId = await ready!.evaluate((li) => li.getAttribute('data-upload-id'));
    const thumbnailUrl = (await fetchStatus(server.url, readyId!)).outputs.find((o) => o.name === 'thumbnail')!.url;
    // The server's thumbnail is shown (in the list; the tile's own preview races Uppy's thumbnail generator, see the README's known limits).
    expect(new URL((await loadedThumbnail(page, readyId!)).src).pathname).toBe(new URL(thumbnailUrl!).pathname);
    expect(await page.$eval(readyTile, (el) => el.className)).toContain('is-complete');
    expect((await loadedThumbnail(page, readyId!)).width).toBeGreaterThan(0);
    // One status read per upload (for its stream's link), then events only.
    expect(statusPolls.length).toBeLessThanOrEqual(2);

    await page.screenshot({ path: path.join(artifactsDir, 'demo-rejected-and-ready.png'), fullPage: true });
    await page.close();
  });

  it("shows a file refused at creation with the server's reason on its tile, not as a success, with no Retry", { timeout: 120_000 }, async () => {
    const file = path.join(samples.dir, 'setup.exe');
    await writeFile(file, Buffer.from('MZ not a photo'));
    const page = await openDemo();
    await addFile(page, file);
    const item = await page.waitForSelector('#uploads li[data-status="refused"]', { timeout: 90_000 });
    const reason = await item!.$eval('.reason', (el) => el.textContent);
    expect(reason).toMatch(/^Upload refused: .* is not allowed/);
    const fileId = await item!.evaluate((li) => li.getAttribute('data-file-id'));
    const tileSelector = `[id="uppy_${fileId!}"]`;
    await page.waitForFunction((selector) => document.querySelector(`${selector} .upload-state`) !== null, {}, tileSelector);
    const tile = await page.$eval(tileSelector, (el) => ({
      classes: el.className,
      state: el.querySelector('.upload-state')?.textContent,
      retryShown: Array.from(el.querySelectorAll('.uppy-Dashboard-Item-progressIndicator')).some((b) => (b as HTMLElement).offsetParent !== null),
    }));
    expect(tile.state).toBe(`refused: ${reason}`);
    expect(tile.classes).toContain('is-error');
    expect(tile.retryShown).toBe(false);
    expect(await page.$$('.uppy-StatusBar-actionBtn--retry')).toHaveLength(0);
    await page.screenshot({ path: path.join(artifactsDir, 'demo-refused.png'), fullPage: true });
    await page.close();
  });

  it('resumes a paused upload where the server stopped, in 1 MiB PATCHes', { timeout: 120_000 }, async () => {
    const chunkSize = 1024 * 1024;
    const data = pdf(8 * chunkSize);
    const file = path.join(samples.dir, 'data.pdf');
    await writeFile(file, data);
    const page = await openDemo(`?chunkSize=${chunkSize}`);
    const patches: { offset: number; status: number | undefined }[] = [];
    page.on('requestfinished', (request: HTTPRequest) => {
      if (request.method() === 'PATCH') patches.push({ offset: Number(request.headers()['upload-offset']), status: request.response()?.status() });
    });
    // Pause once the first PATCH is answered (more than one chunk sent): the server then holds part of the file.
    await page.evaluate((size) => {
      const demo = window as unknown as DemoWindow;
      demo.uppy.on('upload-progress', (file, progress) => {
        if (file && demo.pausedAt === undefined && progress.bytesUploaded > size) {
          demo.pausedAt = progress.bytesUploaded;
          demo.uppy.pauseResume(file.id);
        }
      });
    }, chunkSize);
    await addFile(page, file);

    await page.waitForFunction(() => (window as unknown as DemoWindow).pausedAt !== undefined, { timeout: 60_000 });
    const progressOf = () => page.evaluate(() => (window as unknown as DemoWindow).uppy.getFiles().map((f) => ({ id: f.id, bytes: f.progress.bytesUploaded, url: f.tus?.uploadUrl }))[0]!);
    const { id: fileId, url: uploadUrl } = await progressOf();
    expect(uploadUrl).toMatch(new RegExp(`^${server.url}/files/`));
    const serverOffset = async () => Number((await fetch(uploadUrl!, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } })).headers.get('upload-offset'));
    const offset = await eventually('the aborted PATCH to settle on the server', async () => {
      const before = await serverOffset();
      await sleep(1000);
      return before === (await serverOffset()) && before;
    });
    expect(offset).toBeGreaterThanOrEqual(chunkSize);
    expect(offset).toBeLessThan(data.length);
    // The upload stands still while paused: neither Uppy's progress nor the server's offset moves.
    const pausedBytes = (await progressOf()).bytes;
    await sleep(1000);
    expect((await progressOf()).bytes).toBe(pausedBytes);
    expect(pausedBytes).toBeLessThan(data.length);
    expect(await serverOffset()).toBe(offset);
    const sentBeforeResume = patches.length;

    await page.evaluate((id) => (window as unknown as DemoWindow).uppy.pauseResume(id), fileId);
    const shown = await settledOnPage(page);
    expect(shown.status).toBe('ready');
    // The first PATCH after resuming starts at the server's offset, not at 0.
    expect(patches[sentBeforeResume]?.offset).toBe(offset);
    expect(patches.filter((p) => p.status === 204).length).toBeGreaterThan(1);
    const status = await fetchStatus(server.url, shown.id);
    expect(status).toMatchObject({ status: 'ready', detectedType: 'application/pdf', size: data.length, offset: data.length, sha256: sha256(data) });
    await page.close();
  });

  describe('with tokens on (AUTH_SECRET)', () => {
    let authEnvironment: TestEnvironment;
    let authServer: RunningServer;
    // Its own browser context, closed first: the server's close waits for connections the browser still holds open.
    let context: BrowserContext;
    beforeAll(async () => {
      authEnvironment = await createTestEnvironment('embedded', { AUTH_SECRET: testAuthSecret });
      authServer = await startTestServer(authEnvironment);
      context = await browser.createBrowserContext();
    });
    afterAll(async () => {
      await context?.close();
      await authServer?.close();
      await authEnvironment?.destroy();
    });

    it('uploads with the token from the page\'s field and shows it ready, its thumbnail loaded from a signed link', { timeout: 120_000 }, async () => {
      const token = await mintToken('alice');
      const file = await cameraJpeg(samples.dir, 800, 600, 'alice.jpg');
      const page = await openDemo('', authServer.url, context);
      expect(await tokenFieldShown(page)).toBe(true);
      await page.type('#token', token);
      const tusAuthorization: (string | undefined)[] = [];
      page.on('request', (request: HTTPRequest) => {
        if (new URL(request.url()).pathname.startsWith('/files/') && request.method() !== 'OPTIONS') tusAuthorization.push(request.headers().authorization);
      });
      await addFile(page, file);

      const shown = await settledOnPage(page);
      expect(shown.status).toBe('ready');
      expect(tusAuthorization.length).toBeGreaterThan(0);
      expect(new Set(tusAuthorization)).toEqual(new Set([`Bearer ${token}`]));
      // The <img> sends no Authorization header: only the link's signature lets it in.
      const thumbnail = await loadedThumbnail(page, shown.id);
      expect(new URL(thumbnail.src).searchParams.get('sig')).toBeTruthy();
      expect(thumbnail.width).toBeGreaterThan(0);
      const status = await fetchStatus(authServer.url, shown.id, bearer(token));
      expect(status).toMatchObject({ status: 'ready', owner: 'alice', filename: 'alice.jpg' });

      // The token is kept in the browser: a reload needs no pasting again.
      await page.reload({ waitUntil: 'load' });
      expect(await page.$eval('#token', (input) => (input as HTMLInputElement).value)).toBe(token);
      await page.close();
    });
  });
});
