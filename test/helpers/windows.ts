/** The most events in any window of `windowMs` (an event at t counts in [t, t + windowMs]): how a sliding-window limit is judged. */
export function maxInWindow(times: number[], windowMs: number): number {
  const t = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < t.length; i++) {
    while (t[i]! - t[j]! > windowMs) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}
