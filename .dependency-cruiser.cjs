/**
 * The architecture as rules (`npm run lint:deps`): folders are layers.
 *   src/http → src/services → src/catalog, billing, limits, providers, store, images, config, domain (+ auth, metrics)
 * Providers and the store never reach up into http or services; providers never touch the store or billing; only the
 * composition root (src/server.ts, src/main.ts, src/cli/) wires concrete stores, limiter back-ends and adapters.
 */
const LOWER = '^src/(catalog|billing|limits|providers|store|images|config|domain|auth|metrics)/';
const ROOT = '^src/(server\\.ts|main\\.ts|cli/)';

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'No import cycles: each module can be read (and tested) before the ones that use it.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'lower-layers-not-up',
      comment: 'catalog, billing, limits, providers, store, images, config, domain, auth and metrics never import http or services.',
      severity: 'error',
      from: { path: LOWER },
      to: { path: '^src/(http|services)/' },
    },
    {
      name: 'services-not-http',
      comment: 'Services know nothing of HTTP: async jobs and the CLI call them too.',
      severity: 'error',
      from: { path: '^src/services/' },
      to: { path: '^src/http/' },
    },
    {
      name: 'http-through-services',
      comment: 'Routes reach the store, adapters, pricing and limits only through services.',
      severity: 'error',
      from: { path: '^src/http/' },
      to: { path: '^src/(store|providers|billing|limits)/' },
    },
    {
      name: 'providers-stay-in-their-room',
      comment: 'An adapter maps our request to its wire and back: no store, no billing.',
      severity: 'error',
      from: { path: '^src/providers/' },
      to: { path: '^src/(store|billing)/' },
    },
    {
      name: 'domain-is-the-floor',
      comment: 'Shared types and pure helpers: domain imports nothing else of ours.',
      severity: 'error',
      from: { path: '^src/domain/' },
      to: { path: '^src/', pathNot: '^src/domain/' },
    },
    {
      name: 'only-the-root-wires-concretes',
      comment: 'Concrete stores, limiter back-ends and the built-in adapters are chosen in server.ts, main.ts and the CLI only.',
      severity: 'error',
      from: { path: '^src/', pathNot: ROOT },
      to: { path: '^src/(providers/index\\.ts|store/open-store\\.ts|limits/open-limiter\\.ts)$' },
    },
    {
      name: 'concretes-behind-their-opener',
      comment: 'Store and limiter implementations are reached through open-store.ts / open-limiter.ts, adapters through providers/index.ts.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/(store|limits|providers)/' },
      to: { path: '^src/(store/(sqlite|postgres)/|limits/(redis|memory)-backend\\.ts|providers/(?!shared/|types\\.ts|registry\\.ts|index\\.ts)[^/]+/)' },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: 'src-not-to-tests',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    // Type-only imports count: a layer that needs another's types depends on it.
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs', '.json'] },
  },
};
