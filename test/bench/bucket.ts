// What the S3 benches share: the server's settings for a bucket on radosgw, and checking and
// emptying that bucket between runs (radosgw's store is RAM).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { testS3 } from '../services/env.ts';
import type { Slice } from './clients.ts';
import { serverEnv } from './common.ts';

/** The scale-out server's settings for `bucket` on the test radosgw and the database at `databaseUrl`. */
export function bucketServerEnv(dataDir: string, databaseUrl: string, bucket: string): Record<string, string> {
  return {
    ...serverEnv(dataDir),
    RUN_JOBS: 'false',
    DATABASE_URL: databaseUrl,
    S3_BUCKET: bucket,
    S3_ENDPOINT: testS3.endpoint,
    S3_REGION: testS3.region,
    S3_ACCESS_KEY_ID: testS3.accessKeyId,
    S3_SECRET_ACCESS_KEY: testS3.secretAccessKey,
    S3_FORCE_PATH_STYLE: 'true',
  };
}

/** The stored object holds exactly the slice's bytes (sha256 of both, streamed). */
export async function expectWhole(client: S3Client, bucket: string, key: string, slice: Slice): Promise<void> {
  const { Body } = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const stored = await sha256(Body as NodeJS.ReadableStream);
  const sent = await sha256(createReadStream(slice.file, { start: slice.start, end: slice.start + slice.length - 1 }));
  if (stored !== sent) throw new Error(`object ${key} does not hold the bytes sent`);
}

export async function sha256(stream: NodeJS.ReadableStream): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Deletes everything in the bucket, so radosgw's RAM store does not fill over the rounds. */
export async function emptyBucket(client: S3Client, bucket: string): Promise<void> {
  for (;;) {
    const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    const keys = (listed.Contents ?? []).flatMap((o) => (o.Key ? [{ Key: o.Key }] : []));
    if (keys.length === 0) return;
    await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }));
  }
}
