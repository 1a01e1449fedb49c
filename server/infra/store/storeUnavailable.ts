import type { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { isConnectionFailure, markUnavailable } from '../settings/unavailableDependency.ts';

/** Marks `error` as the store's being unreachable if it is such a failure (refused, reset, timed out, a gateway with no store behind it). */
function markIfUnreachable(error: unknown): void {
  if (!(error instanceof Error)) return;
  const httpStatus = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  // The SDK's own timeouts (requestTimeout, connectionTimeout) and a gateway answering for a missing backend.
  if (isConnectionFailure(error) || error.name === 'TimeoutError' || httpStatus === 502 || httpStatus === 503 || httpStatus === 504) {
    markUnavailable(error, 'store');
  }
}

/** Marks every failure of `client`'s commands that means the store is unreachable, after the SDK's own retries (its middleware stack). */
export function markStoreFailures(client: Pick<S3Client, 'middlewareStack'>): void {
  client.middlewareStack.add(
    (next) => async (args) => {
      try {
        return await next(args);
      } catch (error) {
        markIfUnreachable(error);
        throw error;
      }
    },
    { step: 'initialize', name: 'markStoreUnavailable' },
  );
}

/** A body read from the store: its connection lost mid-read (the command itself had succeeded) is the store's too. */
export function markStreamFailures<T extends Readable>(body: T): T {
  body.prependListener('error', markIfUnreachable);
  return body;
}
