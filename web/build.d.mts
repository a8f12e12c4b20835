/** Bundles web/ into `outdir` (default dist/web) and returns the files written, relative to it. */
export function buildDashboard(outdir?: string): Promise<string[]>;
