/** Wait until a writable can take more (or is closed); both listeners go away after, so repeated waits leak nothing. */
interface Emitter {
  on(event: string, f: () => void): unknown;
  off(event: string, f: () => void): unknown;
}

export function drained(w: Emitter): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      w.off('drain', done);
      w.off('close', done);
      resolve();
    };
    w.on('drain', done);
    w.on('close', done);
  });
}
