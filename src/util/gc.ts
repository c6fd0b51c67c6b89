/**
 * Explicit garbage collection for streaming hot paths. Import and export
 * churn through gigabytes of short-lived external buffers that V8 only
 * reclaims when its own (small) heap fills, so RSS drifts upwards; a full GC
 * every few hundred MiB costs a few milliseconds and keeps peak RSS bounded.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

let gcFn: (() => void) | null | undefined;

function getGc(): (() => void) | null {
  if (gcFn !== undefined) return gcFn;
  try {
    v8.setFlagsFromString('--expose-gc');
    gcFn = vm.runInNewContext('gc') as () => void;
  } catch {
    gcFn = null;
  }
  return gcFn;
}

/** Returns a function to call with the bytes processed since the last call; collects every `every` bytes. */
export function gcEvery(every = 256 * 1024 * 1024): (bytes: number) => void {
  let since = 0;
  return (bytes) => {
    since += bytes;
    if (since < every) return;
    since = 0;
    getGc()?.();
  };
}
