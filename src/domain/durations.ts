/**
 * A wait said as a person reads it, for messages: "40 seconds" up to a minute, then whole minutes rounded up
 * ("15 minutes" for 899 s), so the words never promise less than the wait. Headers keep seconds (Retry-After).
 */
export function waitInWords(seconds: number): string {
  const whole = Math.max(1, Math.ceil(seconds));
  if (whole < 60) return whole === 1 ? '1 second' : `${whole} seconds`;
  const minutes = Math.ceil(whole / 60);
  return minutes === 1 ? '1 minute' : `${minutes} minutes`;
}
