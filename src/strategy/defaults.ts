/**
 * Default chunker, chosen by `npm run bench` (bench/results/latest.md, chunker
 * comparison over the five corpus images, all imported into one store):
 *
 *   spec               store MB   delivery sum MB   objects   peak RSS MB
 *   cdc:16k:64k:256k     1035.0        845.5          29045       272
 *   cdc:8k:32k:128k      1009.7        812.7          55665       277
 *   cdc:4k:16k:64k       1009.7        801.0         107423       296
 *   fixed:64k            1870.5       1676.3          80870       228
 *
 * cdc:4k is smallest by 1.4 % of delivered bytes, but doubles the object
 * count (one HTTP request and one file per object on every pull and store)
 * and leaves 4 MB of headroom under the 300 MB RSS budget; cdc:8k:32k:128k
 * gets nearly all of its gain at half the objects.
 */
export const DEFAULT_CHUNKER_SPEC = 'cdc:8k:32k:128k';

/** Files smaller than this share chunks with their neighbours: a 1 KiB object costs more than it saves. */
export const DEFAULT_MIN_FILE = 16 * 1024;
