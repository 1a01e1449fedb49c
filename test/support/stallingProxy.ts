// A TCP proxy in the test process that can go silent on chosen connections without closing them:
// it stops reading and writing, so both peers' kernels keep the connection up (and acknowledge
// keepalive probes) while no byte gets through, as when a NAT or a proxy on the path hangs.
import net, { type Socket } from 'node:net';

export interface StallingProxy {
  /** `postgres://…` with the proxy's host and port in place of the target's. */
  url: string;
  /**
   * Stops forwarding on every open connection whose first bytes from the client (a Postgres
   * startup message names its application_name) pass `test`; returns how many.
   */
  stall(test: (startup: string) => boolean): number;
  /** Connections stalled and still open on both sides at the proxy. */
  stalledOpen(): number;
  close(): Promise<void>;
}

interface Forwarded {
  client: Socket;
  upstream: Socket;
  startup: string;
  stalled: boolean;
}

export async function startStallingProxy(targetUrl: string): Promise<StallingProxy> {
  const target = new URL(targetUrl);
  const connections = new Set<Forwarded>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    const forwarded: Forwarded = { client, upstream, startup: '', stalled: false };
    connections.add(forwarded);
    client.once('data', (chunk: Buffer) => (forwarded.startup = chunk.toString('latin1')));
    forward(forwarded, client, upstream);
    forward(forwarded, upstream, client);
    for (const socket of [client, upstream]) {
      socket.on('error', () => undefined);
      socket.on('close', () => {
        client.destroy();
        upstream.destroy();
        connections.delete(forwarded);
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(targetUrl);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as net.AddressInfo).port);
  return {
    url: url.toString(),
    stall(test) {
      let stalled = 0;
      for (const connection of connections) {
        if (connection.stalled || !test(connection.startup)) continue;
        connection.stalled = true;
        connection.client.pause();
        connection.upstream.pause();
        stalled++;
      }
      return stalled;
    },
    stalledOpen: () => [...connections].filter((c) => c.stalled && !c.client.destroyed && !c.upstream.destroyed).length,
    close: () =>
      new Promise<void>((resolve) => {
        for (const { client, upstream } of connections) {
          client.destroy();
          upstream.destroy();
        }
        server.close(() => resolve());
      }),
  };
}

/** Copies `from` to `to` until the connection is stalled (a chunk already read then is dropped: nothing gets through any more). */
function forward(connection: Forwarded, from: Socket, to: Socket): void {
  from.on('data', (chunk: Buffer) => {
    if (connection.stalled) return;
    if (to.write(chunk)) return;
    from.pause();
    to.once('drain', () => {
      if (!connection.stalled) from.resume();
    });
  });
}
