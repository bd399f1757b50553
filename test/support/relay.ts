/**
 * A TCP relay on loopback in front of a server: a second endpoint for the same server, which a
 * test can stop for real (listener closed, every connection cut) while a client is using it.
 */
import { createServer, connect, type Socket } from 'node:net';

export interface Relay {
  endpoint: string;
  /** Bytes relayed from clients to the server so far. */
  readonly bytesIn: number;
  /** Calls `fn` once, as soon as more than `bytes` were relayed to the server. */
  once(bytes: number, fn: () => void): void;
  /** Calls `fn` once, as soon as more than `bytes` were relayed from the server to clients. */
  onceOut(bytes: number, fn: () => void): void;
  /** Cuts every open connection and keeps listening: a client that connects again gets through. */
  cut(): void;
  /** Stops listening and cuts every open connection. */
  stop(): Promise<void>;
}

export async function startRelay(target: string): Promise<Relay> {
  const upstream = new URL(target);
  const sockets = new Set<Socket>();
  let bytesIn = 0;
  let bytesOut = 0;
  const triggers: { bytes: number; fn: () => void }[] = [];
  const triggersOut: { bytes: number; fn: () => void }[] = [];
  const track = (socket: Socket): void => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const server = createServer((client) => {
    const server = connect(Number(upstream.port), upstream.hostname);
    track(client);
    track(server);
    client.on('data', (chunk: Buffer) => {
      bytesIn += chunk.length;
      for (const t of triggers.splice(0)) {
        if (bytesIn > t.bytes) t.fn();
        else triggers.push(t);
      }
    });
    server.on('data', (chunk: Buffer) => {
      bytesOut += chunk.length;
      for (const t of triggersOut.splice(0)) {
        if (bytesOut > t.bytes) t.fn();
        else triggersOut.push(t);
      }
    });
    client.pipe(server);
    server.pipe(client);
    client.on('close', () => server.destroy());
    server.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port assigned');
  let stopping: Promise<void> | undefined;
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    get bytesIn() {
      return bytesIn;
    },
    once(bytes, fn) {
      triggers.push({ bytes, fn });
    },
    onceOut(bytes, fn) {
      triggersOut.push({ bytes, fn });
    },
    cut() {
      for (const socket of sockets) socket.destroy();
    },
    stop() {
      stopping ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      return stopping;
    },
  };
}
