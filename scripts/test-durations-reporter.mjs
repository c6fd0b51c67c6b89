// node:test reporter for scripts/run-tests.mjs --update-durations: one JSON line per top-level
// test or suite that finished, {file, seconds}; run-tests.mjs sums them per file.
export default async function* durations(source) {
  for await (const ev of source) {
    if ((ev.type === 'test:pass' || ev.type === 'test:fail') && ev.data.nesting === 0 && ev.data.file) {
      yield JSON.stringify({ file: ev.data.file, seconds: (ev.data.details?.duration_ms ?? 0) / 1000 }) + '\n';
    }
  }
}
