import type { Context } from 'koa';
import type { Upload } from '@tus/utils';
import type { TusRequest } from './tusRequest.ts';

/** What an extension adds to @tus/server's OPTIONS answer (which lists only its store's extensions). */
export interface Announcement {
  /** Its name in `Tus-Extension`. */
  extension: string;
  /** Headers that describe it (e.g. `Tus-Checksum-Algorithm`). */
  headers?: Record<string, string>;
  /** Request headers a page's preflight must be allowed to send. */
  requestHeaders?: string[];
}

/** What a creation step hands @tus/server: the metadata to store with the upload. */
export interface Created {
  metadata?: Upload['metadata'];
}

/**
 * One protocol feature of the tus edge (tusEdge.ts lists them in order). Each implements only the
 * steps it needs; the edge calls `before` in list order and `answer` in reverse, as Koa
 * middleware unwinds, and every other step in list order.
 */
export interface TusExtension {
  readonly name: string;
  readonly announces?: Announcement;
  /**
   * Before @tus/server reads the request: answer it (a refusal: do not call `next`), or change
   * what @tus/server will see through `request.engine` and `request.body`, then call `next`. A
   * creation retried with its Idempotency-Key (`request.retried` set) skips the later steps and
   * @tus/server: the answers run on the edge's answer for the upload it made.
   */
  before?(ctx: Context, request: TusRequest, next: () => Promise<void>): Promise<void>;
  /** Records the upload @tus/server is about to create; the first extension that returns a result creates it. */
  create?(upload: Upload, request: TusRequest): Promise<Created | undefined>;
  /** The store holds the new upload; its body is not read yet. */
  created?(url: string, request: TusRequest): void;
  /** Bytes arrived (at most once per POST_RECEIVE interval, maybe after the request ended). */
  received?(upload: Upload): void;
  /** The last byte is stored; the first extension that returns true has dealt with it. */
  finish?(upload: Upload, request: TusRequest): Promise<boolean>;
  /** @tus/server's answer, as the extensions after this one left it. */
  answer?(response: Response, request: TusRequest): Promise<Response>;
  /** The client terminated the upload (tus termination). */
  terminated?(id: string, request: TusRequest): Promise<void>;
}
