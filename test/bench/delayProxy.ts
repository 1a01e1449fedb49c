// A TCP proxy that makes a localhost connection behave like a long path: each byte arrives
// `delayMs` after it was sent, and at most `windowBytes` are on the way per direction (as a TCP
// window bounds what is unacknowledged), so one connection moves at most windowBytes / delayMs.
import net, { type Socket } from 'node:net';

export interface DelayProxy {
  port: number;
  close(): Promise<void>;
}

export async function startDelayProxy(targetPort: number, delayMs: number, windowBytes: number): Promise<DelayProxy> {
  const sockets = new Set<Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    delayedPipe(client, upstream, delayMs, windowBytes);
    delayedPipe(upstream, client, delayMs, windowBytes);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Timers of one duration fire in the order they were set, so the bytes keep their order. */
function delayedPipe(from: Socket, to: Socket, delayMs: number, windowBytes: number): void {
  let onTheWay = 0;
  from.on('data', (chunk: Buffer) => {
    onTheWay += chunk.length;
    if (onTheWay >= windowBytes) from.pause();
    setTimeout(() => {
      if (to.destroyed) return;
      to.write(chunk, () => {
        onTheWay -= chunk.length;
        if (onTheWay < windowBytes && !from.destroyed) from.resume();
      });
    }, delayMs);
  });
  from.on('end', () => setTimeout(() => to.end(), delayMs));
  from.on('close', () => setTimeout(() => to.destroy(), delayMs));
}
