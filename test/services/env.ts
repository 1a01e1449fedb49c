// Connection facts for the real services started by test/globalSetup.ts
// (scripts in test/services/*.sh). Tests import from here instead of hard-coding.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const servicesDir = process.env.SERVICES_DIR ?? path.join(repoRoot, '.services');

export const testDatabaseUrl =
  process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export const testS3 = {
  endpoint: process.env.TEST_S3_ENDPOINT ?? 'http://127.0.0.1:17480',
  accessKeyId: 'tusaccess',
  secretAccessKey: 'tussecret',
  region: 'us-east-1',
} as const;

export const clamdSocket = path.join(servicesDir, 'clamd', 'clamd.sock');
export const clamdHost = '127.0.0.1';
export const clamdPort = Number(process.env.TEST_CLAMD_PORT ?? 13310);

/**
 * S3ClientConfig for radosgw. Checksums only WHEN_REQUIRED: newer SDKs otherwise add
 * CRC32 trailers / x-amz-checksum headers by default, which radosgw (Ceph 16) rejects or
 * mis-handles (streamed UploadPart bodies in particular).
 */
export function testS3ClientConfig(): S3ClientConfig & {
  endpoint: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
} {
  return {
    endpoint: testS3.endpoint,
    region: testS3.region,
    credentials: { accessKeyId: testS3.accessKeyId, secretAccessKey: testS3.secretAccessKey },
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
}

export function testS3Client(): S3Client {
  return new S3Client(testS3ClientConfig());
}

/** Creates a fresh, empty bucket and returns its name (random unless given). */
export async function createTestBucket(name?: string): Promise<string> {
  const bucket = name ?? `test-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const client = testS3Client();
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
  return bucket;
}
