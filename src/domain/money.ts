/**
 * Money is held as integer nano-dollars (1 nano = 1e-9 USD) in a bigint.
 * Nano-dollars make every real price rule an integer: per-image prices, per-megapixel prices, and
 * per-token prices down to $0.001 per 1M tokens (= 1 nano per token). Nothing here ever uses floats.
 */
export type Nanos = bigint;

export const NANOS_PER_USD = 1_000_000_000n;
/** Largest balance or amount accepted anywhere (fits a signed 64-bit column with room to spare). */
export const MAX_AMOUNT: Nanos = 1_000_000_000n * NANOS_PER_USD; // $1B

const DECIMAL_USD = /^(\d{1,12})(?:\.(\d{1,9}))?$/;

/** Parses "0.134", "12", 0.05 into nanos. Throws RangeError with a readable message on anything else. */
export function parseUsd(value: unknown): Nanos {
  let text: string;
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new RangeError('must be a non-negative finite number');
    // Numbers go through their shortest round-trip decimal form, so 0.1 stays 0.1 and not 0.1000000000000000055.
    text = numberToPlainString(value);
  } else if (typeof value === 'string') {
    text = value.trim();
  } else {
    throw new RangeError('must be a USD amount as a decimal string or a number');
  }
  const match = DECIMAL_USD.exec(text);
  if (!match) throw new RangeError(`"${String(value).slice(0, 40)}" is not a USD amount with at most 9 decimal places`);
  const whole = BigInt(match[1]);
  const fraction = BigInt((match[2] ?? '').padEnd(9, '0'));
  const nanos = whole * NANOS_PER_USD + fraction;
  if (nanos > MAX_AMOUNT) throw new RangeError('exceeds the maximum amount of $1,000,000,000');
  return nanos;
}

function numberToPlainString(value: number): string {
  const text = String(value);
  if (!/e/i.test(text)) return text;
  // 1e-7 → "0.0000001"; toFixed(9) is exact for anything parseUsd would accept anyway.
  return value.toFixed(9).replace(/\.?0+$/, '');
}

/** Exact decimal string, trimmed: 1_500_000_000n → "1.5", 135_000n → "0.000135". */
export function formatUsd(nanos: Nanos): string {
  const negative = nanos < 0n;
  const abs = negative ? -nanos : nanos;
  const whole = abs / NANOS_PER_USD;
  const fraction = (abs % NANOS_PER_USD).toString().padStart(9, '0').replace(/0+$/, '');
  return `${negative ? '-' : ''}${whole}${fraction ? `.${fraction}` : ''}`;
}

/** For JSON number fields such as usage.cost.total_cost: the double nearest to the exact decimal. */
export function usdNumber(nanos: Nanos): number {
  return Number(formatUsd(nanos));
}

/** Integer division rounding up, for costs (a fraction of a nano is charged as one nano). */
export function divCeil(numerator: bigint, denominator: bigint): bigint {
  if (numerator <= 0n) return 0n;
  return (numerator + denominator - 1n) / denominator;
}
