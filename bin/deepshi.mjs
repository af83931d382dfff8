#!/usr/bin/env node
// `npx deepshi …`: the operator CLI, from the compiled build in dist/ (built by `npm install` through `prepare`).
await import('../dist/cli/deepshi.js');
