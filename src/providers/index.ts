import { OfflineSketchAdapter } from './offline/sketch-adapter.ts';
import type { ImageAdapter } from './types.ts';
// Each upstream adapter is imported and listed here, and nowhere else (src/server.ts calls this).
// (adapter imports)

export function builtInAdapters(): ImageAdapter[] {
  return [
    new OfflineSketchAdapter(),
    // (adapter instances)
  ];
}
