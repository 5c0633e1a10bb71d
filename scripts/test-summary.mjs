#!/usr/bin/env node
// Reads vitest's JSON report and prints one closing line: "tests: N passed, N failed, N skipped".
// Exits 1 when nothing ran, so an empty run never looks like a pass, and in CI when a test was
// skipped, unless its skip is the allowed kind: a kernel module missing, marked by the test
// itself (test/helpers/kernel.ts: meta.allowedSkip "kernel module X is missing: ...").
import { readFileSync } from "node:fs";

const report = JSON.parse(readFileSync(process.argv[2], "utf8"));
const passed = report.numPassedTests ?? 0;
// A suite that fails to load has no failed test of its own: count it as one failure.
const failedSuitesWithoutTests = (report.testResults ?? []).filter(
  (r) => r.status === "failed" && !(r.assertionResults ?? []).some((a) => a.status === "failed"),
).length;
const failed = (report.numFailedTests ?? 0) + failedSuitesWithoutTests;
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
// In CI every test must run: a skip there means a missing install step (a Debian package, the
// native addon), which a machine set up by hand would hide.
const ALLOWED = /^kernel module \S+ is missing/;
const allowed = (report.testResults ?? []).flatMap((r) =>
  (r.assertionResults ?? []).filter(
    (a) =>
      (a.status === "skipped" || a.status === "pending") &&
      typeof a.meta?.allowedSkip === "string" &&
      ALLOWED.test(a.meta.allowedSkip),
  ),
);
for (const a of allowed) console.log(`skipped (allowed): ${a.fullName}: ${a.meta.allowedSkip}`);
if (process.env.CI && skipped > allowed.length) {
  console.error(
    `${skipped - allowed.length} tests were skipped in CI for another reason than a missing kernel module: every package they need must be installed by scripts/setup.sh`,
  );
  process.exit(1);
}
if (passed === 0) {
  console.error("no test passed: treating the run as a failure");
  process.exit(1);
}
