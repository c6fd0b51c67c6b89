/** Both ends of one Unix-socket connection, for tests of what a server writes to its client. */
import net from 'node:net';
import { once } from 'node:events';
import { tmpDir } from '../helpers/tmp.js';

export interface UnixPair {
  /** The server's end. */
  sock: net.Socket;
  client: net.Socket;
  /** Destroy both ends, stop listening, remove the socket's directory. */
  close: () => void;
}

export async function unixPair(): Promise<UnixPair> {
  const t = tmpDir();
  const server = net.createServer();
  server.listen(`${t.dir}/s`);
  await once(server, 'listening');
  const client = net.connect(`${t.dir}/s`);
  const [sock] = (await once(server, 'connection')) as [net.Socket];
  return { sock, client, close: () => (client.destroy(), sock.destroy(), server.close(), t.cleanup()) };
}
