import type { Context } from 'koa';
import type { HookContext } from '../../../hooks/hookContext.ts';
import {
  earlierCreation,
  forgetFailedCreation,
  idempotencyProblem,
  keyTakenRefusal,
  readIdempotencyKey,
  type CreationAsked,
  type IdempotencyProblem,
} from '../../../hooks/idempotentCreation.ts';
import { closeAfterAnswer } from '../../http/lingeringClose.ts';
import type { Upload } from '../../infra/db/schema.ts';
import type { TusExtension } from '../tusExtension.ts';
import { callerOf, type TusRequest } from '../tusRequest.ts';
import { TUS_VERSION } from '../tusWire.ts';

/** The answer to a creation retried with its Idempotency-Key: the upload it made, where it stands now (tusEdge.ts makes it). */
export type RetriedAnswer = (request: TusRequest, upload: Upload) => Promise<Response>;

const problemJson = 'application/problem+json';

/**
 * Idempotency-Key on tus and IETF draft creations (hooks/idempotentCreation.ts holds the rule).
 * Runs after access (the key is the owner's) and before anything counts or judges the creation:
 * a retry is answered with the upload the key made (`request.retried`: the edge skips the other
 * steps and @tus/server, so its body is never stored twice), a reuse for another creation is 422.
 * A partial upload (concatenation) is a piece, not an upload: tus-js-client sends its one set of
 * headers, key included, with every part and the final, so the key belongs to the final.
 */
export function idempotency(context: HookContext, retriedAnswer: RetriedAnswer): TusExtension {
  return {
    name: 'idempotency',
    before: async (ctx, request, next) => {
      const { method, headers } = request.engine;
      if (method !== 'POST' || headers.get('Upload-Concat') === 'partial') return next();
      const claim = readIdempotencyKey(context, headers.get('Idempotency-Key') ?? undefined, askedBy(request));
      if (!claim) return next();
      if ('status' in claim) return refuse(ctx, claim);
      const earlier = await earlierCreation(context, callerOf(request).owner, claim);
      if (earlier.kind === 'different' || earlier.kind === 'outstanding') return refuse(ctx, earlier.problem);
      if (earlier.kind === 'same') request.retried = earlier.upload;
      else request.idempotency = claim;
      return next();
    },

    answer: async (response, request) => {
      const claim = request.idempotency;
      if (!claim) return response;
      const owner = callerOf(request).owner;
      if (request.engineError === keyTakenRefusal) {
        // A request with the same key made the upload while this one was being judged: the same answer as a retry's, or 409 while it is not made yet.
        const earlier = await earlierCreation(context, owner, claim);
        if (earlier.kind === 'same') return retriedAnswer(request, earlier.upload);
        const problem = earlier.kind === 'none' ? idempotencyProblem('outstanding', 'the other request with this Idempotency-Key failed; retry') : earlier.problem;
        return problemResponse(problem, response.headers);
      }
      if (response.status >= 500 && request.createdId) await forgetFailedCreation(context, owner, claim, request.createdId);
      return response;
    },
  };
}

/**
 * What a creation asks for, as @tus/server will see it (the IETF draft's already turned into tus
 * headers, a final's Upload-Concat not yet replaced by its length): a retry asks for the same.
 */
function askedBy({ engine: { headers }, draft }: TusRequest): CreationAsked {
  const metadata = (headers.get('Upload-Metadata') ?? '').split(',').map((pair) => pair.trim()).filter(Boolean).sort();
  return {
    protocol: draft ? 'ietf-draft' : 'tus',
    length: headers.get('Upload-Length'),
    deferred: headers.get('Upload-Defer-Length') !== null,
    metadata,
    concat: headers.get('Upload-Concat'),
  };
}

function refuse(ctx: Context, problem: IdempotencyProblem): void {
  ctx.set('Tus-Resumable', TUS_VERSION);
  ctx.status = problem.status;
  ctx.type = problemJson;
  ctx.body = problem.body;
  closeAfterAnswer(ctx);
}

function problemResponse(problem: IdempotencyProblem, base: Headers): Response {
  const headers = new Headers(base);
  headers.delete('Content-Length');
  headers.set('Content-Type', problemJson);
  return new Response(problem.body, { status: problem.status, headers });
}
