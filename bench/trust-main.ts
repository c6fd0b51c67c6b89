/** Runs only the origin load test: `node dist/bench/trust-main.js` (BENCH_TRUST_* settings as in bench/trust.ts). */
import { benchOriginLoad } from './trust-load.js';
import { trustOptsFromEnv } from './trust.js';

const o = trustOptsFromEnv(process.env);
console.log(JSON.stringify(await benchOriginLoad({ ...o.load, log: (s) => console.error(`[trust] ${s}`) }), null, 2));
