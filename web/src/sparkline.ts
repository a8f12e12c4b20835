/** Samples kept per series: one minute at the page's 500 ms interval. */
export const HISTORY = 120;

/** Appends a sample, dropping the oldest past HISTORY. */
export function push(series: number[], value: number): void {
  series.push(value);
  if (series.length > HISTORY) series.shift();
}

/**
 * An inline SVG of two series (p50 and p99) on one scale from 0 to the
 * largest p99 shown, so the gap between the lines reads as tail latency.
 */
export function sparkline(p50: readonly number[], p99: readonly number[], width = 110, height = 24): string {
  const max = Math.max(1e-9, ...p99, ...p50);
  const line = (s: readonly number[]) =>
    s
      .map((v, i) => {
        // Stretched over the width until the history is full, then it scrolls.
        const x = s.length === 1 ? width : (i / (s.length - 1)) * width;
        const y = height - 1 - (v / max) * (height - 2);
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      })
      .join(" ");
  return (
    `<svg class="spark" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" aria-hidden="true">` +
    `<polyline class="p50" fill="none" stroke-width="1.5" points="${line(p50)}"/>` +
    `<polyline class="p99" fill="none" stroke-width="1" points="${line(p99)}"/></svg>`
  );
}
