/**
 * The end of `npm start`: the demo store served with its web portal on
 * 127.0.0.1 (a real `vmdn serve` child), until Ctrl-C. Only when stdout is a
 * terminal: piped or in CI the demo exits as soon as it is done.
 */
import { spawn } from 'node:child_process';

/** Start `vmdn serve` on `listen`; resolves to its URL, or undefined if it exited first (the port is taken). */
function serve(cli: string, listen: string): Promise<{ url: string; stop: () => void } | undefined> {
  const child = spawn(process.execPath, [cli, 'serve', '--listen', listen, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve) => {
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b;
      const m = /"url":\s*"([^"]+)"/.exec(out);
      if (m) resolve({ url: m[1]!, stop: () => child.kill('SIGTERM') });
    });
    child.on('exit', () => resolve(undefined));
  });
}

export async function servePortalUntilCtrlC(cli: string, images: string[]): Promise<void> {
  if (!process.stdout.isTTY) return;
  // the usual port if it is free, else any
  const s = (await serve(cli, '127.0.0.1:8480')) ?? (await serve(cli, '127.0.0.1:0'));
  if (!s) {
    console.log('\n(could not start vmdn serve for the portal)');
    return;
  }
  console.log(`\nthe portal: ${s.url}/  (the images: ${[...new Set(images.map((n) => `${s.url}/image/${n.split(":")[0]}`))].join(" ")})`);
  console.log('serving this store with its portal and API until Ctrl-C');
  await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
  s.stop();
}
