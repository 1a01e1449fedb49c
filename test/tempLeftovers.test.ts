import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from './support/eventually.ts';
import { killAll, startServerProcess } from './support/processes.ts';
import { pdf, sha256 } from './support/samples.ts';
import { createTestEnvironment, type TestEnvironment } from './support/testServer.ts';
import { createTusUpload } from './support/tusRequests.ts';
import { tusUpload, uploadIdOf, waitUntilSettled } from './support/uploads.ts';
import { h264Clip, makeSampleDir, removeSampleDir } from './support/videoSamples.ts';

/**
 * What a SIGKILLed server leaves in its temp folder (a checksummed PATCH's body, a media job's
 * work folder) is removed by the next start, and only that: another live process's files stay.
 * Each server here gets a TMPDIR of its own, so the test sees exactly what its servers leave.
 */

/** This test process's start time (field 22 of /proc/self/stat): with its pid, the tag of a live process's temp files. */
function ownStartTime(): string {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
}

describe('temp files of a killed server (scaleout)', () => {
  let environment: TestEnvironment;
  let tmpDir: string;
  let samples: string;

  beforeAll(async () => {
    environment = await createTestEnvironment('scaleout');
    samples = await makeSampleDir();
  });
  afterEach(async () => {
    await killAll();
    await fs.rm(tmpDir, { recursive: true, force: true });
  });
  afterAll(async () => {
    await killAll();
    await removeSampleDir(samples);
    await environment?.destroy();
  });

  const tempOf = async (prefix: string) => (await fs.readdir(tmpDir)).filter((name) => name.startsWith(prefix));

  /** Temp files another, live process made (this one), and one whose pid runs again as another process: the first must stay. */
  async function othersFiles(): Promise<{ live: string; reused: string }> {
    const live = path.join(tmpDir, `tus-checksum-${process.pid}.${ownStartTime()}-live`);
    const reused = path.join(tmpDir, `media-${process.pid}.1-reused`);
    await fs.writeFile(live, 'a live process is writing this');
    await fs.mkdir(reused);
    return { live, reused };
  }

  it('a checksummed PATCH cut by SIGKILL: its temp body is gone after the next start; the upload resumes whole', async () => {
    tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), 'leftovers-'));
    const env = { ...environment.env, TMPDIR: tmpDir };
    const first = await startServerProcess(env);
    const data = pdf(2 * 1024 * 1024);
    const url = await createTusUpload(first.url, data.length, { filename: 'checksummed.pdf' });

    // Half the body, then nothing: the server holds it in its temp file until the rest arrives.
    const cut = http.request(url, {
      method: 'PATCH',
      headers: {
        'Tus-Resumable': '1.0.0',
        'Upload-Offset': '0',
        'Content-Type': 'application/offset+octet-stream',
        'Content-Length': data.length,
        'Upload-Checksum': `sha256 ${Buffer.from(sha256(data), 'hex').toString('base64')}`,
      },
    });
    cut.on('error', () => undefined);
    cut.write(data.subarray(0, data.length / 2));
    const [leftover] = await eventually('the checksummed body in a temp file', async () => {
      const files = await tempOf(`tus-checksum-${first.pid}.`);
      return files.length > 0 && (await fs.stat(path.join(tmpDir, files[0]!))).size > 0 && files;
    });
    await first.killGroup('SIGKILL');
    cut.destroy();
    expect(existsSync(path.join(tmpDir, leftover!))).toBe(true);
    const others = await othersFiles();

    const second = await startServerProcess(env);
    expect(existsSync(path.join(tmpDir, leftover!)), 'the killed server\'s temp body').toBe(false);
    expect(existsSync(others.live), 'a live process\'s temp file').toBe(true);
    expect(existsSync(others.reused), 'the temp folder of an ended process whose pid runs again').toBe(false);
    expect(second.logs.find((l) => l.msg === 'removed the temp files of processes that ended')).toMatchObject({ removed: 2 });

    // Nothing of the cut request was kept; the client resumes from 0 and the file ends whole.
    const resumed = await tusUpload(second.url, data, { uploadUrl: url.replace(first.url, second.url), filename: 'checksummed.pdf' });
    expect((await waitUntilSettled(second.url, uploadIdOf(resumed.url), 60_000)).sha256).toBe(sha256(data));
  }, 180_000);

  it('a media job cut by SIGKILL: its work folder is gone after the next start, which runs the job again', async () => {
    tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), 'leftovers-'));
    const env = { ...environment.env, TMPDIR: tmpDir, JOB_LEASE: '2s' };
    const first = await startServerProcess(env);
    const clip = await fs.readFile(await h264Clip(samples, { seconds: 8, width: 640, height: 360 }));
    const { url } = await tusUpload(first.url, clip, { filename: 'clip.mp4', filetype: 'video/mp4' });
    const id = uploadIdOf(url);
    const [workDir] = await eventually('the video job\'s work folder', async () => {
      const dirs = await tempOf(`media-${first.pid}.`);
      return dirs.length > 0 && dirs;
    }, 120_000);
    expect(workDir).toContain(id);
    await first.killGroup('SIGKILL');
    expect(existsSync(path.join(tmpDir, workDir!))).toBe(true);
    const others = await othersFiles();

    const second = await startServerProcess(env);
    expect(existsSync(path.join(tmpDir, workDir!)), 'the killed server\'s work folder').toBe(false);
    expect(existsSync(others.live)).toBe(true);
    expect(existsSync(others.reused)).toBe(false);
    expect((await waitUntilSettled(second.url, id, 240_000)).status).toBe('ready');
    // The job that ran again cleaned up after itself.
    expect(await tempOf('media-')).toEqual([]);
  }, 400_000);
});
