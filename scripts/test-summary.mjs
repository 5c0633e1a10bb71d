#!/usr/bin/env node
// Reads vitest's JSON report and prints one closing line: "tests: N passed, N failed, N skipped".
// Exits 1 when nothing ran, so an empty run never looks like a pass.
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
if (passed === 0) {
  console.error("no test passed: treating the run as a failure");
  process.exit(1);
}
