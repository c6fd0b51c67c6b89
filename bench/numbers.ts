/** Number formatting shared by the bench reports: 'n/a' for anything not measured. */
export const MB = 1e6;
export const fin = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);
export const f1 = (x: number | null | undefined) => (fin(x) ? x.toFixed(1) : 'n/a');
export const f2 = (x: number | null | undefined) => (fin(x) ? x.toFixed(2) : 'n/a');
export const mb = (x: number | null | undefined) => (fin(x) ? (x / MB).toFixed(1) : 'n/a');
/** Ratio a/b, null when either is missing or b is 0. */
export const ratio = (a: number | null | undefined, b: number | null | undefined): number | null => (fin(a) && fin(b) && b > 0 ? a / b : null);
