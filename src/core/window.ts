/**
 * Recent samples of one duration, for windowed percentiles. A fixed ring:
 * recording is one store, with no allocation; percentiles are computed only
 * when a snapshot is taken (once per metrics tick, shared by subscribers).
 */
export interface SampleWindow {
  record(value: number, at: number): void;
  /** Percentiles (0..1) of the samples taken at or after `since`; 0 when there are none. */
  percentiles(qs: readonly number[], since: number): number[];
}

export function createSampleWindow(size = 512): SampleWindow {
  const values = new Float64Array(size);
  const times = new Float64Array(size);
  let next = 0;
  let count = 0;
  return {
    record(value, at) {
      values[next] = value;
      times[next] = at;
      next = next + 1 === size ? 0 : next + 1;
      if (count < size) count++;
    },
    percentiles(qs, since) {
      const picked: number[] = [];
      for (let i = 0; i < count; i++) {
        if (times[i]! >= since) picked.push(values[i]!);
      }
      if (picked.length === 0) return qs.map(() => 0);
      picked.sort((a, b) => a - b);
      // Nearest-rank: the smallest sample with at least q of the samples at or below it.
      return qs.map((q) => picked[Math.min(picked.length - 1, Math.max(0, Math.ceil(q * picked.length) - 1))]!);
    },
  };
}
