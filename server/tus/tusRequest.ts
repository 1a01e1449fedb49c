import { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Context } from 'koa';
import type { FinalUpload } from '../../hooks/concatenation.ts';
import type { KeyClaim } from '../../hooks/idempotentCreation.ts';
import type { Creator } from '../../hooks/uploadCreate.ts';
import type { Caller } from '../auth/verifyToken.ts';
import type { Upload, UploadLimits, UploadPart } from '../infra/db/schema.ts';
import type { StoreRequest } from '../infra/store/storeRequest.ts';
import type { DraftRequest } from './ietfDraft/draftRequest.ts';
import { headerInteger } from './tusWire.ts';

/** What a creation request is in the concatenation extension, once it was checked. */
export type ConcatCreation = { kind: 'partial' } | { kind: 'final'; final: FinalUpload };

/**
 * The one state of a tus request: made once when it reaches the edge, filled in by the
 * extensions' steps in their order, and read by @tus/server's hooks and the store through the
 * request scope. What @tus/server is asked is `engine` (method and headers) and `body`: the steps
 * before it change those, never the Node request.
 */
export interface TusRequest {
  readonly node: { req: IncomingMessage; res: ServerResponse };
  /** The client's address as Koa sees it (X-Forwarded-For only behind a proxy, PUBLIC_URL set). */
  readonly ip: string;
  /** The upload id the URL names, if it names one. */
  readonly id: string | undefined;
  /** The method and headers @tus/server is handed. */
  readonly engine: { method: string; headers: Headers };
  /** Who is asking: set by the access extension; read through `callerOf`. */
  caller: Caller | undefined;
  /** The caller's own upload the URL names (HEAD, PATCH, DELETE). */
  upload?: Upload;
  /** Or the caller's unused partial upload (concatenation) it names. */
  partial?: UploadPart;
  /** The limits the creation settled on (the token's, narrowed by the app's check). */
  limits?: UploadLimits;
  concat?: ConcatCreation;
  /** The Idempotency-Key a creation claims (the idempotency extension). */
  idempotency?: KeyClaim;
  /** The upload a retried creation (same Idempotency-Key) made before: the answer, instead of @tus/server's. */
  retried?: Upload;
  /** The id of the upload this creation is making, once @tus/server is about to create it. */
  createdId?: string;
  /** The IETF draft's view of the request, when it speaks the draft. */
  draft?: DraftRequest;
  /** The body @tus/server reads: the socket's, or a verified copy (checksum). */
  body: Readable;
  /** Bytes a step already read off `body` (to check them), which @tus/server gets first. */
  readAhead: Buffer | undefined;
  /** What @tus/server's handler failed with, if it failed (before its answer was made from it). */
  engineError?: unknown;
  /** What the store may know of this request. */
  readonly store: StoreRequest;
}

/** The request each of @tus/server's calls (hooks, events, store) is serving. */
const scope = new AsyncLocalStorage<TusRequest>();

/**
 * The request state of the Koa request `ctx` on the tus path `tusPath`. "The Server MUST use the
 * value of the X-HTTP-Method-Override header as the HTTP method" (for clients and proxies that
 * only speak GET and POST): every step and the metrics see that method.
 */
export function openTusRequest(ctx: Context, tusPath: string): TusRequest {
  const override = ctx.get('X-HTTP-Method-Override');
  if (override) ctx.method = override.toUpperCase();
  const { req, res } = ctx;
  const headers = new Headers();
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
  const id = ctx.path.startsWith(`${tusPath}/`) ? ctx.path.slice(tusPath.length + 1) : undefined;
  return {
    node: { req, res },
    ip: ctx.ip,
    id: id || undefined,
    engine: { method: ctx.method, headers },
    caller: undefined,
    body: req,
    readAhead: undefined,
    store: { bodyLength: wholeBodyLength(req), notes: new Map() },
  };
}

/** Who is asking; a step that runs before authentication is a bug, never an anonymous caller. */
export function callerOf(request: TusRequest): Caller {
  if (!request.caller) throw new Error('tus request: no caller yet (the access extension runs first)');
  return request.caller;
}

/** Who creates the upload `request` makes. */
export function creatorOf(request: TusRequest): Creator {
  const { owner, limits } = callerOf(request);
  return { owner, limits, ip: request.ip, idempotency: request.idempotency };
}

/** Runs `serve` (@tus/server serving `request`) with `request` as the scope of every call it makes. */
export function runInRequestScope<T>(request: TusRequest, serve: () => T): T {
  return scope.run(request, serve);
}

/** The request the current call of @tus/server's serves; there is always one. */
export function currentTusRequest(): TusRequest {
  const request = scope.getStore();
  if (!request) throw new Error('tus: a call of @tus/server outside a request scope');
  return request;
}

/** For the store: the request it is serving, if a tus request runs it. */
export function currentStoreRequest(): StoreRequest | undefined {
  return scope.getStore()?.store;
}

/** The length a Node request's body has when it arrives whole, if its headers say. */
function wholeBodyLength(req: IncomingMessage): number | undefined {
  return req.headers['transfer-encoding'] === undefined ? headerInteger(req.headers['content-length']) : undefined;
}
