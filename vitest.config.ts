import { defineConfig } from "vitest/config";

// Unit tests run in parallel; tests that touch the kernel, real peers or etcd
// live in files named *.netns.test.ts / *.etcd.test.ts and create their own
// namespaces and servers with a per-run prefix.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 2,
  },
});
