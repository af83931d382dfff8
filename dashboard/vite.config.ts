import { defineConfig } from 'vite';

// The dashboard is a static single-page app: `vite build` writes dashboard/dist, which the server mounts at /
// (src/http/dashboard-static.ts). `npm run dev -w dashboard` serves it with hot reload and forwards the API paths
// to a server on :8080, so the page talks to the server exactly as it does when served by it.
const api = 'http://127.0.0.1:8080';

export default defineConfig({
  // Preact's JSX runtime (automatic): no React, no compiler plugin.
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  resolve: { alias: { react: 'preact/compat', 'react-dom': 'preact/compat' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // Never inline assets as data: URIs — the server's CSP allows data: for images only (fonts would be refused).
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  server: {
    port: 5173,
    proxy: Object.fromEntries(['/v1', '/dashboard/api', '/admin', '/openapi.json', '/healthz', '/readyz'].map((path) => [path, api])),
  },
});
