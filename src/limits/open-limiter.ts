import type { Logger } from 'pino';
import { RequestLimiter, type LimiterMetrics } from './limiter.ts';
import { MemoryLimitBackend } from './memory-backend.ts';
import type { KeyLimits } from './types.ts';

/**
 * Picks the limits backend: Redis when REDIS_URL is set (shared by every instance), else this process's memory.
 * An unreachable Redis does not stop start-up: the limiter fails open to per-instance limits and says so.
 */
export async function openLimiter(options: {
  redisUrl: string | undefined;
  redisPrefix: string;
  defaults: KeyLimits;
  leaseMs: number;
  logger: Logger;
  metrics?: LimiterMetrics;
}): Promise<RequestLimiter> {
  const { logger, metrics } = options;
  if (!options.redisUrl) {
    return new RequestLimiter({ backend: new MemoryLimitBackend(), defaults: options.defaults, leaseMs: options.leaseMs, logger, metrics });
  }
  const { RedisLimitBackend } = await import('./redis-backend.ts');
  let lastLogged = 0;
  const backend = new RedisLimitBackend(options.redisUrl, {
    prefix: options.redisPrefix,
    onError: (error) => {
      // ioredis reports every failed reconnect; one line per 10 s is enough (the limiter logs each degraded period).
      if (Date.now() - lastLogged < 10_000) return;
      lastLogged = Date.now();
      logger.error({ err: error }, 'redis connection error');
    },
  });
  const connected = await backend.connect();
  if (connected) logger.info('rate limits shared through redis');
  else logger.error('redis is unreachable at start-up: rate limits are per instance until it is back (failing open)');
  return new RequestLimiter({ backend, defaults: options.defaults, leaseMs: options.leaseMs, logger, metrics });
}
