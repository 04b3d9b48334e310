import type { Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo, Server as NetServer } from 'node:net';

export function hostPort(address: string): [string, number] {
  const split = address.lastIndexOf(':');
  return [address.slice(0, split), Number(address.slice(split + 1))];
}

/** Listens on `host:port` (port 0: any free one); resolves with host and the port bound. */
export async function listen(server: Server | HttpsServer | NetServer, address: string): Promise<string> {
  const [host, port] = hostPort(address);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  return `${host}:${bound.port}`;
}

/** Closes an HTTP server and every connection it holds, idle or not. */
export async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
