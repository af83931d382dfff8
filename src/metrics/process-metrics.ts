import { Registry, collectDefaultMetrics } from 'prom-client';

/** Node's own process metrics, registered once per process however many servers it starts (tests start many). */
let processRegistry: Registry | undefined;

export function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}
