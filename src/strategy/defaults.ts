/**
 * Default chunker, chosen by the benchmark (bench/results): see docs/format.md.
 */
export const DEFAULT_CHUNKER_SPEC = 'cdc:16k:64k:256k';
