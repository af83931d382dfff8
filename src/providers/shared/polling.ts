import { ProviderError } from '../types.ts';
import { sleep } from './http.ts';

export interface PollSchedule {
  /** When the job is given up (epoch ms): `poll_timeout_ms` after the schedule was made. */
  readonly deadline: number;
  /**
   * Waits until the next poll is due. When that poll would come after `poll_timeout_ms`, runs `onTimeout` and throws
   * an accepted failure instead (the job was accepted, so it is never submitted again).
   */
  next(signal: AbortSignal, onTimeout?: () => void): Promise<void>;
}

/**
 * The wait between polls of a queued job (BFL, fal), from the route options: `poll_interval_ms` is the first wait
 * (default 500 ms), growing ×1.5 up to 4 s (or up to the interval, when that is longer); `poll_timeout_ms`
 * (default 270 s), counted from now, is when the job is given up.
 */
export function pollSchedule(options: Record<string, unknown>, provider: string): PollSchedule {
  const interval = optionMs(options.poll_interval_ms, 500);
  const timeoutMs = optionMs(options.poll_timeout_ms, 270_000);
  const deadline = Date.now() + timeoutMs;
  let wait = interval;
  return {
    deadline,
    async next(signal, onTimeout) {
      if (Date.now() + wait > deadline) {
        onTimeout?.();
        throw new ProviderError('failed', `${provider} did not finish the image within ${Math.round(timeoutMs / 1000)} s`, {
          accepted: true,
        });
      }
      await sleep(wait, signal);
      wait = Math.min(Math.max(wait * 1.5, interval), Math.max(4_000, interval));
    },
  };
}

function optionMs(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : fallback;
}
