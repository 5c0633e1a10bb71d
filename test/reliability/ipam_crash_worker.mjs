// One process of the IPAM crash test: assigns (and now and then releases) addresses in a loop
// until it is killed, writing a report line before and after each datastore operation so the
// test knows which operations were cut off. Usage:
//   node ipam_crash_worker.mjs URL NODE FIRST_INDEX REPORT_FILE
// Plain JavaScript on the compiled dist/ (built by npm ci), so a start costs no TypeScript
// transform: the test starts it dozens of times.
// "ready" goes to stdout; the report lines go to REPORT_FILE, each with a synchronous write()
// before the worker goes on, so a SIGKILL loses none: written to stdout (a pipe), lines the
// test process had not read yet were queued inside the worker when the pipe was full and died
// with it (the test then missed operations that had happened). Report lines: "begin I",
// "done I ADDRESS", "rel I", "reldone I".
import { openSync, writeSync } from "node:fs";
import { openDatastore } from "../../dist/datastore/open.js";
import { IpamStore } from "../../dist/ipam/store.js";

const [url, node, firstArg, reportFile] = process.argv.slice(2);
if (!url || !node || !firstArg || !reportFile) {
  process.stderr.write("usage: ipam_crash_worker.mjs URL NODE FIRST_INDEX REPORT_FILE\n");
  process.exit(2);
}
const store = await openDatastore(url);
const ipam = new IpamStore(store, { emptyBlockGraceMs: 0 });
const report = openSync(reportFile, "w");
const out = (line) => writeSync(report, `${line}\n`);
process.stdout.write("ready\n");
const HOLD = 24;
const held = [];
// Bounded: the test kills this process long before the loop ends.
for (let i = Number(firstArg); i < Number(firstArg) + 100_000; i++) {
  out(`begin ${i}`);
  const [a] = await ipam.autoAssign({ handleId: `crash-${i}`, node, num4: 1, num6: 0 });
  out(`done ${i} ${a?.address}`);
  held.push(i);
  // Release one in three, the oldest first, so freed addresses are reused under the kills;
  // and never hold more than HOLD, so a fast machine does not run the pool dry: the test's
  // pool holds HOLD times the soak's kill count with room to spare.
  if (i % 3 === 0 || held.length > HOLD) {
    const r = held.shift();
    out(`rel ${r}`);
    await ipam.releaseByHandle(`crash-${r}`, node);
    out(`reldone ${r}`);
  }
}
