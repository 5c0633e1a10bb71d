// Micro-benchmark of an import ownership change (src/bgp/policy/ownership.ts) in a RIB that
// holds N routes from a ToR (no sockets, no kernel): a mesh peer's ownership gains and loses a
// block, five times, re-evaluated (a) over the whole table, as any other import policy change
// (Rib.setImportPolicy), and (b) at the prefixes ownershipDelta names (Rib.setImportPolicyAt,
// what the speaker does for an ownership-only change). Prints the milliseconds of each.
//
//   npx tsx bench/ownership_reeval.ts [N=1000000]
import { readFileSync } from "node:fs";
import { parseConfig } from "../src/bgp/config.js";
import { ownershipDelta } from "../src/bgp/policy/ownership.js";
import { simpleAttrs } from "../src/bgp/rib/simple_attrs.js";
import { policiesFor } from "../src/bgp/speaker/core.js";
import { makeRib, peer } from "../test/rib/fixtures.js";

const N = Number(process.argv[2] ?? 1_000_000);
const rib = makeRib();
const tor = peer(rib, { address: "10.0.0.254", asn: 65000 });
const node = peer(rib, { address: "10.0.0.2", asn: 64512 });
const torAttrs = rib.intern(
  simpleAttrs({ nextHop: "10.0.0.254", asPath: [{ type: 2, asns: [65000] }] } as never),
);
for (let i = 0; i < N; i++) rib.announceV4(tor, torAttrs, (0x20000000 + i * 256) >>> 0, 24, 0);
const nodeAttrs = rib.intern(simpleAttrs({ nextHop: "10.0.0.2" }));
for (let i = 0; i < 4; i++) rib.announceV4(node, nodeAttrs, (0x0af50000 + i * 64) >>> 0, 26, 0);

const cfg = (accept: string[]) =>
  parseConfig({
    asn: 64512,
    routerId: "10.0.0.1",
    peers: [
      {
        address: "10.0.0.2",
        asn: 64512,
        importOwnership: { within: ["10.245.0.0/16"], accept },
      },
    ],
  }).peers[0] as ReturnType<typeof parseConfig>["peers"][number];
const step = (k: number) => cfg(["10.245.0.0/26", `10.245.0.${64 * ((k % 3) + 1)}/26`]);

const whole: number[] = [];
for (let k = 0; k < 5; k++) {
  const pol = policiesFor(step(k), 64512);
  const t0 = performance.now();
  rib.setImportPolicy(node, pol.importPolicy);
  whole.push(performance.now() - t0);
}
const delta: number[] = [];
let prev = step(4);
for (let k = 0; k < 5; k++) {
  const c = step(k);
  const pol = policiesFor(c, 64512);
  const t0 = performance.now();
  const at = ownershipDelta(prev.importOwnership, c.importOwnership);
  if (at === undefined) throw new Error("ownershipDelta: whole table");
  rib.setImportPolicyAt(node, pol.importPolicy, at);
  delta.push(performance.now() - t0);
  prev = c;
}
const f = (l: number[]) => l.map((t) => t.toFixed(2)).join(" ");
const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
console.log(`${N} routes in the RIB (load ${load})`);
console.log(`whole table (setImportPolicy) ms: ${f(whole)}`);
console.log(`changed prefixes only (setImportPolicyAt) ms: ${f(delta)}`);
