import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores on CI: e2e files start servers and child processes; two workers keep them from starving.
    maxWorkers: 2,
  },
});
