import { Redis } from 'ioredis';

/**
 * Counts failed attempts (sign-in, code redemption) per name in fixed windows that start at the first failure.
 * Redis when REDIS_URL is set, so the count holds across instances; this process's memory otherwise. An unreachable
 * Redis answers "no failures yet" (fail open, like the request limiter) rather than locking every user out.
 */
export interface AttemptState {
  count: number;
  /** Until the window ends (0 when there is none). */
  resetMs: number;
}

export interface AttemptCounter {
  readonly kind: 'memory' | 'redis';
  /** Adds one failure to `name`'s window (starting one of `windowMs` if none is open). */
  fail(name: string, windowMs: number): Promise<AttemptState>;
  peek(name: string): Promise<AttemptState>;
  clear(name: string): Promise<void>;
  close(): Promise<void>;
}

export class MemoryAttemptCounter implements AttemptCounter {
  readonly kind = 'memory' as const;
  private readonly windows = new Map<string, { count: number; endsAt: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  async fail(name: string, windowMs: number): Promise<AttemptState> {
    const now = this.now();
    this.sweep(now);
    let window = this.windows.get(name);
    if (!window || window.endsAt <= now) {
      window = { count: 0, endsAt: now + windowMs };
      this.windows.set(name, window);
    }
    window.count++;
    return { count: window.count, resetMs: window.endsAt - now };
  }

  async peek(name: string): Promise<AttemptState> {
    const now = this.now();
    const window = this.windows.get(name);
    if (!window || window.endsAt <= now) return { count: 0, resetMs: 0 };
    return { count: window.count, resetMs: window.endsAt - now };
  }

  async clear(name: string): Promise<void> {
    this.windows.delete(name);
  }

  async close(): Promise<void> {}

  /** Drops ended windows now and then, so an attacker spraying names cannot grow the map without end. */
  private sweep(now: number): void {
    if (this.windows.size < 10_000) return;
    for (const [name, window] of this.windows) if (window.endsAt <= now) this.windows.delete(name);
  }
}

const FAIL_SCRIPT = `
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}`;

export class RedisAttemptCounter implements AttemptCounter {
  readonly kind = 'redis' as const;
  private readonly redis: Redis;

  constructor(
    url: string,
    private readonly prefix: string,
    onError: (error: Error) => void,
  ) {
    this.redis = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, lazyConnect: true });
    this.redis.on('error', onError);
  }

  async connect(): Promise<boolean> {
    try {
      await this.redis.connect();
      return true;
    } catch {
      return false;
    }
  }

  private key(name: string): string {
    return `${this.prefix}attempts:${name}`;
  }

  async fail(name: string, windowMs: number): Promise<AttemptState> {
    try {
      const [count, ttl] = (await this.redis.eval(FAIL_SCRIPT, 1, this.key(name), String(windowMs))) as [number, number];
      return { count: Number(count), resetMs: Number(ttl) };
    } catch {
      return { count: 0, resetMs: 0 };
    }
  }

  async peek(name: string): Promise<AttemptState> {
    try {
      const [count, ttl] = await Promise.all([this.redis.get(this.key(name)), this.redis.pttl(this.key(name))]);
      if (count === null || ttl <= 0) return { count: 0, resetMs: 0 };
      return { count: Number(count), resetMs: ttl };
    } catch {
      return { count: 0, resetMs: 0 };
    }
  }

  async clear(name: string): Promise<void> {
    await this.redis.del(this.key(name)).catch(() => {});
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}

/** Redis when a URL is given (shared by every instance), memory otherwise. */
export async function openAttemptCounter(options: {
  redisUrl: string | undefined;
  prefix: string;
  onError: (error: Error) => void;
}): Promise<AttemptCounter> {
  if (!options.redisUrl) return new MemoryAttemptCounter();
  const counter = new RedisAttemptCounter(options.redisUrl, options.prefix, options.onError);
  await counter.connect();
  return counter;
}
