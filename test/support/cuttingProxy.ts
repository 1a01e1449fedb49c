// A TCP proxy in the test process that cuts one chosen connection midway, as a phone losing its
// network does: the bytes already forwarded stay forwarded, then both sides see the connection reset.
import net, { type Socket } from 'node:net';

export interface CuttingProxy {
  /** `http://127.0.0.1:<port>`: the target's service under the proxy's address. */
  url: string;
  /** How many connections were cut so far. */
  cuts(): number;
  close(): Promise<void>;
}

/**
 * Forwards every connection to `targetUrl` unchanged (the Host header too, so an S3 signature made
 * for the proxy's address still holds), except the first `times` whose request line passes `test`:
 * each is cut once `afterBytes` of it have gone through. (Chromium quietly sends a request again,
 * up to twice, when a kept-alive connection is reset: a page's script sees the third cut.)
 */
export async function startCuttingProxy(targetUrl: string, test: (requestLine: string) => boolean, afterBytes: number, times = 1): Promise<CuttingProxy> {
  const target = new URL(targetUrl);
  const sockets = new Set<Socket>();
  let cuts = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 80), target.hostname);
    let forwarded = 0;
    let chosen = false;
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (chunk: Buffer) => {
      // Each request on a kept-alive connection starts with its request line.
      const line = chunk.subarray(0, 512).toString('latin1').split('\r\n')[0]!;
      if (cuts < times && !chosen && /^[A-Z]+ \S+ HTTP\/1\.1$/.test(line) && test(line)) chosen = true;
      if (chosen) {
        forwarded += chunk.length;
        if (forwarded >= afterBytes) {
          cuts++;
          client.resetAndDestroy();
          upstream.destroy();
          return;
        }
      }
      if (!upstream.write(chunk)) {
        client.pause();
        upstream.once('drain', () => client.resume());
      }
    });
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    cuts: () => cuts,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
