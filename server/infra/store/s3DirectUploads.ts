import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  ListPartsCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createPresignedPost } from '@aws-sdk/s3-presigned-post';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { postLandingKey, type DirectPart, type DirectUploads } from './storage.ts';

/**
 * Direct uploads against one bucket. `client` makes the calls the server sends itself;
 * `presignClient` signs for the address browsers reach the bucket at (S3_PUBLIC_ENDPOINT), and
 * never asks for checksums: a presigned part carries none, so a signed checksum of an empty body
 * would make S3 refuse every part.
 */
export class S3DirectUploads implements DirectUploads {
  private readonly client: S3Client;
  private readonly presignClient: S3Client;
  private readonly bucket: string;

  constructor(client: S3Client, presignClient: S3Client, bucket: string) {
    this.client = client;
    this.presignClient = presignClient;
    this.bucket = bucket;
  }

  async createMultipart(key: string, contentType: string): Promise<string> {
    const { UploadId } = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: contentType }));
    if (!UploadId) throw new Error(`S3 started a multipart upload of ${key} without an UploadId`);
    return UploadId;
  }

  signPart(key: string, uploadId: string, partNumber: number, expiresSeconds: number): Promise<string> {
    const command = new UploadPartCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: partNumber });
    return getSignedUrl(this.presignClient, command, { expiresIn: expiresSeconds });
  }

  async listParts(key: string, uploadId: string): Promise<DirectPart[] | undefined> {
    const parts: DirectPart[] = [];
    for (let marker: string | undefined; ; ) {
      const page = await this.client
        .send(new ListPartsCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumberMarker: marker }))
        .catch((error: unknown) => {
          if (statusOf(error) === 404) return undefined;
          throw error;
        });
      if (!page) return undefined;
      for (const part of page.Parts ?? []) parts.push({ PartNumber: part.PartNumber!, ETag: part.ETag!, Size: part.Size! });
      if (!page.IsTruncated || !page.NextPartNumberMarker) return parts;
      marker = page.NextPartNumberMarker;
    }
  }

  async completeMultipart(key: string, uploadId: string, parts: readonly { PartNumber: number; ETag: string }[]): Promise<void> {
    await this.client.send(
      new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.PartNumber, ETag: p.ETag })) } }),
    );
  }

  async presignPost(key: string, contentType: string, maxBytes: number, expiresSeconds: number): Promise<{ url: string; fields: Record<string, string> }> {
    return createPresignedPost(this.presignClient, {
      Bucket: this.bucket,
      Key: postLandingKey(key),
      Fields: { 'Content-Type': contentType, success_action_status: '201' },
      Conditions: [['content-length-range', 1, maxBytes], ['eq', '$Content-Type', contentType]],
      Expires: expiresSeconds,
    });
  }

  async takePosted(key: string): Promise<void> {
    const landing = postLandingKey(key);
    await this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: key, CopySource: `${this.bucket}/${encodeURIComponent(landing)}` }));
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: landing }));
  }

  async objectSize(key: string): Promise<number | undefined> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return head.ContentLength;
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw error;
    }
  }
}

function statusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}
