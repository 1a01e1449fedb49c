import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * What a store may know of the tus request it is serving, which @tus/server's store calls do not
 * pass: how many bytes the body carries if it arrives whole, and what the store itself learned
 * of an upload during this request (so it does not ask S3 again what it just did).
 */
export interface StoreRequest {
  /** The body's Content-Length; undefined for a chunked body or a request the server made itself. */
  bodyLength: number | undefined;
  /** Per upload id: notes the store keeps for the rest of the request. */
  notes: Map<string, unknown>;
}

const requests = new AsyncLocalStorage<StoreRequest>();

/**
 * The stores that read the scope. Other stores' requests run without one: on Node 22 the first
 * AsyncLocalStorage in use puts a hook on every promise of the process (Node 24's, built on
 * AsyncContextFrame, does not).
 */
const readers = new WeakSet<object>();

/** Said once by a store that reads `currentStoreRequest()`. */
export function readsStoreRequests(store: object): void {
  readers.add(store);
}

/** Runs `serve` (one tus request to `store`) with its body length known to the store, if it asks. */
export function runStoreRequest<T>(store: object, bodyLength: number | undefined, serve: () => T): T {
  return readers.has(store) ? requests.run({ bodyLength, notes: new Map() }, serve) : serve();
}

export function currentStoreRequest(): StoreRequest | undefined {
  return requests.getStore();
}

/** The length a Node request's body has when it arrives whole, if its headers say. */
export function declaredBodyLength(headers: { 'content-length'?: string; 'transfer-encoding'?: string }): number | undefined {
  const length = headers['content-length'];
  return headers['transfer-encoding'] === undefined && length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined;
}
