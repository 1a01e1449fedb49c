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

/** The request a store call is serving, if any: given to the store by whoever runs the requests (the tus edge). */
export type StoreRequestOf = () => StoreRequest | undefined;

export const noStoreRequest: StoreRequestOf = () => undefined;
