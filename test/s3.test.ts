// Proves the S3 service from test/services/radosgw.sh is real and speaks the parts of the
// S3 API the upload server relies on, with the same client settings the server uses.
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { S3Store } from '@tus/s3-store';
import { Upload } from '@tus/server';
import { createTestBucket, testS3ClientConfig } from './services/env.ts';

const MiB = 1024 * 1024;

const sha256 = (b: Buffer | Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A Readable that yields `buf` in small chunks, so the SDK cannot treat it as a buffer. */
function streamOf(buf: Buffer, chunk = 64 * 1024): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < buf.length; i += chunk) yield buf.subarray(i, i + chunk);
    })(),
    { objectMode: false },
  );
}

async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

let s3: S3Client;
let bucket: string;

beforeAll(async () => {
  s3 = new S3Client(testS3ClientConfig());
  bucket = await createTestBucket();
});

afterAll(() => s3?.destroy());

describe('radosgw via @aws-sdk/client-s3', () => {
  it('multipart upload with streamed parts, list, complete, get, presigned get', async () => {
    const key = 'dir/multipart.bin';
    const part1 = randomBytes(5 * MiB); // non-last parts must be >= 5 MiB
    const part2 = randomBytes(1 * MiB + 123);
    const whole = Buffer.concat([part1, part2]);

    const { UploadId } = await s3.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: 'application/octet-stream' }),
    );
    expect(UploadId).toBeTruthy();

    const etags: string[] = [];
    for (const [i, part] of [part1, part2].entries()) {
      const res = await s3.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: key,
          UploadId,
          PartNumber: i + 1,
          Body: streamOf(part),
          ContentLength: part.length, // required for a stream body
        }),
      );
      expect(res.ETag).toBeTruthy();
      etags.push(res.ETag!);
    }

    const listed = await s3.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId }));
    expect(listed.Parts?.map((p) => [p.PartNumber, p.Size, p.ETag])).toEqual([
      [1, part1.length, etags[0]],
      [2, part2.length, etags[1]],
    ]);

    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
      }),
    );

    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    expect(head.ContentLength).toBe(whole.length);

    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const body = await readAll(got.Body as Readable);
    expect(body.length).toBe(whole.length);
    expect(sha256(body)).toBe(sha256(whole));

    // Ranged GET (the server serves Range requests from S3).
    const ranged = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: 'bytes=10-19' }));
    expect(await readAll(ranged.Body as Readable)).toEqual(whole.subarray(10, 20));

    const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: key }), { expiresIn: 60 });
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(sha256(whole));

    // A tampered signature must be refused: proves the presigned URL is really checked.
    const bad = await fetch(url.replace(/X-Amz-Signature=[0-9a-f]/, 'X-Amz-Signature=x'));
    expect(bad.status).toBe(403);
    await bad.arrayBuffer();
  });

  it('AbortMultipartUpload discards the upload', async () => {
    const key = 'aborted.bin';
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    const part = randomBytes(256 * 1024);
    await s3.send(
      new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: 1, Body: streamOf(part), ContentLength: part.length }),
    );
    await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId }));

    // AWS answers NoSuchUpload; radosgw (Ceph 16) answers NoSuchKey. Both are 404.
    await expect(s3.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId }))).rejects.toMatchObject({
      $metadata: { httpStatusCode: 404 },
    });
    await expect(s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).rejects.toMatchObject({
      $metadata: { httpStatusCode: 404 },
    });
  });
});

describe('@tus/s3-store against radosgw', () => {
  function makeStore() {
    const { endpoint, region, credentials } = testS3ClientConfig();
    return new S3Store({
      partSize: 5 * MiB,
      s3ClientConfig: {
        bucket,
        endpoint,
        region,
        credentials,
        forcePathStyle: true,
        requestChecksumCalculation: 'WHEN_REQUIRED',
      },
    });
  }

  it('create, two streamed writes of 6 MiB, getUpload, read back, remove', async () => {
    const store = makeStore();
    const id = `tus-${randomBytes(8).toString('hex')}`;
    const data = randomBytes(12 * MiB);
    const half = 6 * MiB;

    await store.create(new Upload({ id, size: data.length, offset: 0, metadata: { filename: 'a.bin' } }));
    expect((await store.getUpload(id)).offset).toBe(0);

    // First write: one full 5 MiB part + a 1 MiB incomplete part kept in S3 as `<id>.part`.
    expect(await store.write(streamOf(data.subarray(0, half)), id, 0)).toBe(half);
    const mid = await store.getUpload(id);
    expect(mid.offset).toBe(half);
    expect(mid.size).toBe(data.length);

    // Second write completes the upload (S3Store then completes the multipart upload).
    expect(await store.write(streamOf(data.subarray(half)), id, half)).toBe(data.length);
    const done = await makeStore().getUpload(id); // fresh store: no cached metadata
    expect(done.offset).toBe(data.length);
    expect(done.size).toBe(data.length);
    expect(done.metadata).toMatchObject({ filename: 'a.bin' });

    const body = await readAll(await store.read(id));
    expect(body.length).toBe(data.length);
    expect(sha256(body)).toBe(sha256(data));

    // Quirk of @tus/s3-store 2.0.x (same on AWS): remove() first aborts the multipart
    // upload, which S3 refuses with NoSuchUpload once it was completed, so remove() of a
    // *finished* upload throws FILE_NOT_FOUND and deletes nothing. Whoever deletes finished
    // uploads must delete `<id>` and `<id>.info` itself. If this starts passing, the
    // library changed: drop the workaround.
    await expect(store.remove(id)).rejects.toMatchObject({ status_code: 404 });
    await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: id })); // still there
    await s3.send(
      new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: id }, { Key: `${id}.info` }] } }),
    );
    await expect(s3.send(new HeadObjectCommand({ Bucket: bucket, Key: id }))).rejects.toMatchObject({
      $metadata: { httpStatusCode: 404 },
    });
    await expect(makeStore().getUpload(id)).rejects.toMatchObject({ status_code: 404 });
  });

  it('remove() of an unfinished upload aborts it (but leaks <id>.part)', async () => {
    const store = makeStore();
    const id = `tus-${randomBytes(8).toString('hex')}`;
    const data = randomBytes(7 * MiB);
    await store.create(new Upload({ id, size: 20 * MiB, offset: 0 }));
    expect(await store.write(streamOf(data), id, 0)).toBe(data.length);
    expect((await makeStore().getUpload(id)).offset).toBe(data.length);

    await store.remove(id);
    await expect(makeStore().getUpload(id)).rejects.toMatchObject({ status_code: 404 });
    const mpus = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: id }));
    expect(mpus.Uploads ?? []).toEqual([]);

    // Quirk of @tus/s3-store 2.0.x: remove() deletes `<id>` and `<id>.info` but not the
    // incomplete tail part `<id>.part` (here the 2 MiB past the 5 MiB part), which leaks.
    const left = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: id }));
    expect(left.Contents?.map((o) => [o.Key, o.Size])).toEqual([[`${id}.part`, 2 * MiB]]);
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: `${id}.part` }));
  });
});
