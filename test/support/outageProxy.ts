// A TCP proxy in the test process that plays a dependency's outage: while it is down, new
// connections are refused (nothing listens on its port) and every open one is cut, as when the
// service's host goes away; once up again it forwards as before, on the same port.
import net, { type Socket } from 'node:net';

export interface OutageProxy {
  /** `target` with the proxy's host and port in place of the service's. */
  url: string;
  /** Refuses new connections and cuts the open ones. */
  down(): Promise<void>;
  /** Listens again on the same port. */
  up(): Promise<void>;
  /** Connections cut by `down()` so far, to show the outage met traffic. */
  cut(): number;
  close(): Promise<void>;
}

export async function startOutageProxy(target: string): Promise<OutageProxy> {
  const targetUrl = new URL(target);
  const pairs = new Set<[Socket, Socket]>();
  let cut = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(targetUrl.port), targetUrl.hostname);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    for (const socket of pair) {
      socket.on('error', () => undefined);
      socket.on('close', () => {
        pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  let port = 0;
  const listen = () => new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', () => resolve()));
  await listen();
  port = (server.address() as net.AddressInfo).port;
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  const down = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    cut += pairs.size;
    for (const pair of pairs) for (const socket of pair) socket.destroy();
    await closed;
  };
  return {
    url: url.toString().replace(/\/$/, ''),
    down,
    up: listen,
    cut: () => cut,
    close: async () => {
      if (server.listening) await down();
    },
  };
}
