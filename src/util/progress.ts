/** Typed progress events for long operations; the CLI renders them, libraries only emit. */
export interface ProgressEvent {
  phase: 'scan' | 'import' | 'export' | 'verify' | 'gc' | 'fetch' | 'packages';
  /** Units done / total in `unit`. */
  done: number;
  total: number;
  unit: 'bytes' | 'objects' | 'packages';
}

export type OnProgress = (e: ProgressEvent) => void;

/** Calls `fn` at most every `ms` milliseconds, plus always for the final event. */
export function throttle(fn: OnProgress | undefined, ms = 100): OnProgress | undefined {
  if (!fn) return undefined;
  let last = 0;
  return (e) => {
    const now = Date.now();
    if (e.done >= e.total || now - last >= ms) {
      last = now;
      fn(e);
    }
  };
}
