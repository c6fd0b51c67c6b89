/**
 * The layers of vmdn (docs/architecture.md), enforced by `npm test` (scripts/check-layers.mjs):
 * a folder may import only from folders below it, and no files import each other in a loop.
 * Bottom to top; one line per layer. A folder not listed here is refused until it is given a place.
 */
const LAYERS = [
  ['errors', '^src/errors\\.ts$'],
  ['util', '^src/util/'],
  ['container', '^src/container/'],
  ['disk', '^src/disk/'],
  ['fs', '^src/fs/'],
  ['os', '^src/os/'],
  ['store', '^src/store/'],
  ['model', '^src/model/'],
  ['strategy', '^src/strategy/'],
  ['images', '^src/images/'],
  ['inspect', '^src/inspect/'],
  ['net', '^src/net/'],
  ['nbd', '^src/nbd/'],
  ['portal', '^src/portal/'],
  ['cli', '^src/cli/'],
];

/** Inside a layer, parts that must not reach into each other (left may not import right). */
const APART = [
  ['^src/net/wire/', '^src/net/(server|client)/'],
  // an edge is a client of its upstream (server -> client is fine); a client never needs a server
  ['^src/net/client/', '^src/net/server/'],
  ['^src/store/(types|digest|codec|image-name)\\.ts$', '^src/store/(local|cache)/'],
  ['^src/store/local/', '^src/store/cache/'],
  ['^src/strategy/chunks/', '^src/strategy/(files|packages)/'],
  // the helpers every strategy shares know none of them (strategy.ts names their option types; registry.ts registers them)
  ['^src/strategy/(chunker|defaults|stream-chunks)\\.ts$', '^src/strategy/(chunks|files|packages)/'],
];

const upward = LAYERS.flatMap(([name, from], i) =>
  LAYERS.slice(i + 1).map(([above, to]) => ({
    name: `no-${name}-to-${above}`,
    severity: 'error',
    comment: `${name} is below ${above}: it must not import it (docs/architecture.md)`,
    from: { path: from },
    to: { path: to },
  })),
);

module.exports = {
  forbidden: [
    ...upward,
    ...APART.map(([from, to], i) => ({ name: `apart-${i}`, severity: 'error', comment: `${from} must not import ${to}`, from: { path: from }, to: { path: to } })),
    { name: 'no-circular', severity: 'error', comment: 'files that import each other in a loop', from: { path: '^src/' }, to: { circular: true } },
    {
      name: 'every-folder-has-a-layer',
      severity: 'error',
      comment: 'a new folder under src/ needs its place in LAYERS',
      from: { path: '^src/', pathNot: LAYERS.map(([, p]) => p) },
      to: {},
    },
    { name: 'src-not-to-tests', severity: 'error', from: { path: '^src/' }, to: { path: '^(test|bench|scripts)/' } },
    { name: 'no-unresolvable', severity: 'error', from: {}, to: { couldNotResolve: true, dependencyTypesNot: ['core'] } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    parser: 'swc',
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs'] },
  },
};
