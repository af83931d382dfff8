/** Waits in words (src/domain/durations.ts), as the sign-in throttle's message says them. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { waitInWords } from '../../src/domain/durations.ts';

describe('waitInWords', () => {
  it('says seconds below a minute, whole minutes rounded up from a minute on, singular for one', () => {
    const cases: Array<[number, string]> = [
      [0.2, '1 second'],
      [1, '1 second'],
      [40, '40 seconds'],
      [59.1, '1 minute'],
      [60, '1 minute'],
      [61, '2 minutes'],
      [899, '15 minutes'],
      [900, '15 minutes'],
      [3600, '60 minutes'],
    ];
    for (const [seconds, words] of cases) assert.equal(waitInWords(seconds), words, `${seconds} s`);
  });
});
