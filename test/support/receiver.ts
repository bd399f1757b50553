/**
 * A local HTTP server standing in for a Slack incoming webhook or any other webhook: it records
 * every POST and answers with the statuses it is given, in turn ('hang' never answers).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Notification } from '../../src/report/notify.js';

export interface Received {
  path: string;
  headers: Record<string, string>;
  body: unknown;
  /** The status it was answered with; undefined when it was left hanging. */
  status?: number;
  at: number;
}

export interface Receiver {
  url: string;
  received: Received[];
  /** The accepted (2xx) ones. */
  accepted(): Received[];
  /** Answers for the next requests, in turn; after them, `fallback`. */
  answer(...statuses: (number | 'hang')[]): void;
  fallback: number | 'hang';
  stop(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const queue: (number | 'hang')[] = [];
  const hanging: ServerResponse[] = [];
  const receiver: Receiver = {
    url: '',
    received: [],
    accepted: () => receiver.received.filter((r) => r.status !== undefined && r.status < 300),
    answer: (...statuses) => queue.push(...statuses),
    fallback: 200,
    stop: () =>
      new Promise<void>((resolve, reject) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // kept as text
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = String(v);
      const next = queue.length > 0 ? queue.shift()! : receiver.fallback;
      const entry: Received = { path: req.url ?? '/', headers, body, at: Date.now() };
      receiver.received.push(entry);
      if (next === 'hang') {
        hanging.push(res);
        return;
      }
      entry.status = next;
      res.writeHead(next, { 'Content-Type': 'text/plain' });
      res.end(next < 300 ? 'ok' : 'error');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return receiver;
}

/** The notifications about `action` the receiver accepted, in order. */
export function notificationsAbout(receiver: Receiver, action: string): Notification[] {
  return receiver
    .accepted()
    .map((r) => r.body as Notification)
    .filter((n) => n.action === action);
}
