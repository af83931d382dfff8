import { Redis } from 'ioredis';
import {
  IN_FLIGHT_RETRY_MS,
  WINDOW_MS,
  type AdmitInput,
  type AdmitResult,
  type LimitBackend,
  type RefundInput,
  type RefusalReason,
  type ReleaseInput,
  type WindowState,
} from './types.ts';

/**
 * The admission as one Lua script, so it is atomic across every instance sharing the Redis: all windows and slots
 * are checked first and then all taken, or nothing changes. Time is Redis's own clock (TIME), so instances with
 * skewed clocks still share one timeline. The GCRA step is the same as `gcra()` in types.ts.
 *
 * KEYS: requests TAT, images TAT, the key's lease set, the model's lease set, tokens TAT.
 * ARGV: rpm, ipm, images, max in flight, model cap, model slots, lease id, lease ms, tpm, tokens.
 * Returns: admitted (0/1), retry ms, refusal bitmask, then limit/remaining/reset for requests, images and tokens.
 */
const ADMIT_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, ipm, images = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local maxIn, cap, slots = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local lease, leaseMs = ARGV[7], tonumber(ARGV[8])
local tpm, tokens = tonumber(ARGV[9]), tonumber(ARGV[10])
local WINDOW = ${WINDOW_MS}

local function gcra(key, limit, qty)
  local interval = WINDOW / limit
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local nextTat = tat + qty * interval
  local allowAt = nextTat - WINDOW
  if allowAt > now then
    return false, tat, allowAt - now, math.max(0, math.floor((WINDOW - (tat - now)) / interval + 1e-9)), tat - now
  end
  return true, nextTat, 0, math.max(0, math.floor((WINDOW - (nextTat - now)) / interval + 1e-9)), nextTat - now
end

local refused, retry = 0, 0
local rOk, rTat, rRem, rReset = true, 0, 0, 0
local iOk, iTat, iRem, iReset = true, 0, 0, 0
local tOk, tTat, tRem, tReset = true, 0, 0, 0
local useTokens = tpm > 0 and tokens > 0
if rpm > 0 then
  local wait
  rOk, rTat, wait, rRem, rReset = gcra(KEYS[1], rpm, 1)
  if not rOk then refused = refused + 1; retry = math.max(retry, wait) end
end
if ipm > 0 then
  local wait
  iOk, iTat, wait, iRem, iReset = gcra(KEYS[2], ipm, images)
  if images > ipm then
    iOk = false; refused = refused + 4; retry = math.max(retry, WINDOW)
  elseif not iOk then
    refused = refused + 2; retry = math.max(retry, wait)
  end
end
if useTokens then
  local wait
  tOk, tTat, wait, tRem, tReset = gcra(KEYS[5], tpm, tokens)
  if tokens > tpm then
    tOk = false; refused = refused + 64; retry = math.max(retry, WINDOW)
  elseif not tOk then
    refused = refused + 32; retry = math.max(retry, wait)
  end
end
if maxIn > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= maxIn then refused = refused + 8; retry = math.max(retry, ${IN_FLIGHT_RETRY_MS}) end
end
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  if redis.call('ZCARD', KEYS[4]) + slots > cap then refused = refused + 16; retry = math.max(retry, ${IN_FLIGHT_RETRY_MS}) end
end

if refused == 0 then
  if rpm > 0 then redis.call('SET', KEYS[1], string.format('%.3f', rTat), 'PX', math.ceil(rTat - now) + 1000) end
  if ipm > 0 then redis.call('SET', KEYS[2], string.format('%.3f', iTat), 'PX', math.ceil(iTat - now) + 1000) end
  if useTokens then redis.call('SET', KEYS[5], string.format('%.3f', tTat), 'PX', math.ceil(tTat - now) + 1000) end
  if maxIn > 0 then
    redis.call('ZADD', KEYS[3], now + leaseMs, lease)
    redis.call('PEXPIRE', KEYS[3], leaseMs + 1000)
  end
  if cap > 0 then
    for i = 1, slots do redis.call('ZADD', KEYS[4], now + leaseMs, lease .. '#' .. i) end
    redis.call('PEXPIRE', KEYS[4], leaseMs + 1000)
  end
end
if not useTokens then tpm = 0 end
return { refused == 0 and 1 or 0, math.ceil(retry), refused, rpm, rRem, math.ceil(rReset), ipm, iRem, math.ceil(iReset), tpm, tRem, math.ceil(tReset) }
`;

/**
 * Gives unused tokens back to a tokens window, atomically and on Redis's clock: the stored arrival time moves back by
 * their share of the window (gcraRefund in types.ts), never before now. A window that has expired meanwhile is left alone.
 * KEYS: tokens TAT. ARGV: tpm, tokens.
 */
const REFUND_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat <= now then return 0 end
local nextTat = math.max(now, tat - tonumber(ARGV[2]) * (${WINDOW_MS} / tonumber(ARGV[1])))
redis.call('SET', KEYS[1], string.format('%.3f', nextTat), 'PX', math.ceil(nextTat - now) + 1000)
return 1
`;

const REASON_BITS: Array<[number, RefusalReason]> = [
  [1, 'requests'],
  [2, 'images'],
  [4, 'images_over_limit'],
  [32, 'tokens'],
  [64, 'tokens_over_limit'],
  [8, 'in_flight'],
  [16, 'model_concurrency'],
];

type AdmitReply = [number, number, number, number, number, number, number, number, number, number, number, number];

interface DeepshiRedis extends Redis {
  deepshiAdmit(k1: string, k2: string, k3: string, k4: string, k5: string, ...args: Array<string | number>): Promise<AdmitReply>;
  deepshiRefund(k1: string, tpm: number, tokens: number): Promise<number>;
}

export interface RedisLimitOptions {
  /** Prefix of every key this backend writes (DEEPSHI_REDIS_PREFIX), so several deployments can share one Redis. */
  prefix: string;
  /** Bound on one command: a Redis that hangs must not hang requests. */
  commandTimeoutMs?: number;
  onError?: (error: Error) => void;
}

/**
 * Limits shared by every instance through Redis. Commands fail fast while Redis is unreachable (no offline
 * queue, one attempt, a command timeout) so the caller can fall back at once instead of waiting.
 */
export class RedisLimitBackend implements LimitBackend {
  readonly kind = 'redis' as const;
  private readonly redis: DeepshiRedis;
  private readonly prefix: string;

  constructor(url: string, options: RedisLimitOptions) {
    this.prefix = `${options.prefix}rl:`;
    const redis = new Redis(url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 2_000,
      commandTimeout: options.commandTimeoutMs ?? 1_000,
      // Keep trying to reconnect in the background, at most every 2 s.
      retryStrategy: (attempt) => Math.min(attempt * 100, 2_000),
      lazyConnect: true,
    });
    redis.on('error', (error: Error) => options.onError?.(error));
    redis.defineCommand('deepshiAdmit', { numberOfKeys: 5, lua: ADMIT_LUA });
    redis.defineCommand('deepshiRefund', { numberOfKeys: 1, lua: REFUND_LUA });
    this.redis = redis as DeepshiRedis;
  }

  /** Connects, waiting at most `timeoutMs`; false when Redis is not reachable yet (it keeps retrying). */
  async connect(timeoutMs = 2_000): Promise<boolean> {
    const ready = this.redis.connect().then(
      () => true,
      () => false,
    );
    const late = new Promise<boolean>((resolve) => setTimeout(resolve, timeoutMs, false).unref());
    return Promise.race([ready, late]);
  }

  async admit(input: AdmitInput): Promise<AdmitResult> {
    const reply = await this.redis.deepshiAdmit(
      this.key('r', input.keyId),
      this.key('i', input.keyId),
      this.key('k', input.keyId),
      this.key('m', input.model),
      this.key('t', input.keyId),
      input.limits.requestsPerMinute,
      input.limits.imagesPerMinute,
      input.images,
      input.limits.maxInFlight,
      input.modelCap,
      input.modelSlots,
      input.leaseId,
      input.leaseMs,
      input.limits.tokensPerMinute,
      input.tokens,
    );
    const [admitted, retryMs, bits, rpm, rRemaining, rReset, ipm, iRemaining, iReset, tpm, tRemaining, tReset] = reply.map(Number);
    const requests: WindowState | undefined = rpm > 0 ? { limit: rpm, remaining: rRemaining, resetMs: rReset } : undefined;
    const images: WindowState | undefined = ipm > 0 ? { limit: ipm, remaining: iRemaining, resetMs: iReset } : undefined;
    const tokens: WindowState | undefined = tpm > 0 ? { limit: tpm, remaining: tRemaining, resetMs: tReset } : undefined;
    if (admitted === 1) return { admitted: true, requests, images, tokens };
    const reasons = REASON_BITS.filter(([bit]) => (bits & bit) !== 0).map(([, reason]) => reason);
    return { admitted: false, reasons, retryAfterMs: retryMs, requests, images, tokens };
  }

  async refundTokens(input: RefundInput): Promise<void> {
    if (input.tokens <= 0 || input.tokensPerMinute <= 0) return;
    await this.redis.deepshiRefund(this.key('t', input.keyId), input.tokensPerMinute, input.tokens);
  }

  async release(input: ReleaseInput): Promise<void> {
    const slots = Array.from({ length: input.modelSlots }, (_, i) => `${input.leaseId}#${i + 1}`);
    await this.redis
      .multi()
      .zrem(this.key('k', input.keyId), input.leaseId)
      .zrem(this.key('m', input.model), ...slots)
      .exec();
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }

  private key(kind: 'r' | 'i' | 'k' | 'm' | 't', name: string): string {
    return `${this.prefix}${kind}:${name}`;
  }
}
