#!/usr/bin/env node
// `npx deepshi …`: the operator CLI. Runs the TypeScript sources directly through tsx (no build step).
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/deepshi.ts');
