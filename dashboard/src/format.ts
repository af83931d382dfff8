// Amounts arrive as exact USD decimal strings ("4.998"): they are shown digit for digit, never through a float.

/** "4.998" → "$4.998", "5" → "$5.00", "-0.004" → "−$0.004". */
export function usd(amount: string | number | null | undefined): string {
  if (amount === null || amount === undefined || amount === '') return '—';
  const text = String(amount);
  const negative = text.startsWith('-');
  const [whole, fraction = ''] = text.replace(/^[-+]/, '').split('.');
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const digits = fraction.length >= 2 ? fraction : fraction.padEnd(2, '0');
  return `${negative ? '−' : ''}$${grouped}.${digits}`;
}

/** Exact decimal sum of USD strings, in nano-dollars (9 places), back as a plain decimal string. */
export function sumUsd(amounts: string[]): string {
  let total = 0n;
  for (const amount of amounts) total += toNanos(amount);
  return fromNanos(total);
}

export function toNanos(amount: string): bigint {
  const negative = amount.startsWith('-');
  const [whole, fraction = ''] = amount.replace(/^[-+]/, '').split('.');
  const nanos = BigInt(whole || '0') * 1_000_000_000n + BigInt((fraction + '000000000').slice(0, 9));
  return negative ? -nanos : nanos;
}

export function fromNanos(nanos: bigint): string {
  const negative = nanos < 0n;
  const absolute = negative ? -nanos : nanos;
  const whole = absolute / 1_000_000_000n;
  const fraction = (absolute % 1_000_000_000n).toString().padStart(9, '0').replace(/0+$/, '');
  return `${negative ? '-' : ''}${whole}${fraction ? `.${fraction}` : ''}`;
}

const dateTime = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });

export function time(unixSeconds: number | null | undefined): string {
  if (!unixSeconds) return '—';
  return dateTime.format(new Date(unixSeconds * 1000));
}

export function ago(unixSeconds: number | null | undefined, now = Date.now()): string {
  if (!unixSeconds) return 'never';
  const seconds = Math.max(0, Math.round(now / 1000 - unixSeconds));
  if (seconds < 60) return 'just now';
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.round(hours / 24)} days ago`;
}

/** A yyyy-mm-dd date input value → unix seconds at 00:00 UTC of that day. */
export function dayToUnix(day: string): number | undefined {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) return undefined;
  return Math.floor(Date.parse(`${day}T00:00:00Z`) / 1000);
}

export function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}
