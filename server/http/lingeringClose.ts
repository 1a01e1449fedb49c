import type { IncomingMessage } from 'node:http';
import type { ParameterizedContext } from 'koa';

/** How long the bytes a client still sends after our answer are read and dropped (nginx: lingering_time). */
const lingerMs = 5_000;

/**
 * Ends a request whose body is no longer wanted, with `Connection: close`. Node closes such a
 * socket right after the response (socket.destroySoon()); the bytes the client is still sending
 * then reach a closed socket, the kernel answers with a reset, and the reset can overtake the
 * response, so the client sees ECONNRESET (and retries) instead of our answer. As nginx's
 * lingering_close does: send the answer, half-close, read and drop what still arrives, and close
 * when the client stops sending or after `lingerMs`.
 */
export function closeAfterAnswer(ctx: ParameterizedContext): void {
  const { req } = ctx;
  const socket = req.socket;
  ctx.set('Connection', 'close');
  socket.destroySoon = () => {
    socket.end();
    const timer = setTimeout(() => socket.destroy(), lingerMs).unref();
    socket.once('close', () => clearTimeout(timer));
    socket.once('end', () => socket.destroy());
    discardBody(req);
  };
}

/** What still arrives of the body goes nowhere (and keeps the socket read, so nothing backs up). */
function discardBody(req: IncomingMessage): void {
  req.removeAllListeners('data');
  req.on('error', () => undefined);
  req.resume();
}
