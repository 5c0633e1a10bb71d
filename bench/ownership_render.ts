// Micro-benchmark of the import ownership's cost in `ocelot node run` at cluster scale (pure, no
// datastore, no kernel): N Nodes with a /26 each and 30 WorkloadEndpoints each, seen from node 0.
// Prints (a) the whole BGP render (renderBgp, every Node peer's importOwnership included), and,
// with `--before <checkout>/src/node/bgp_state.ts`, that checkout's render alternated with it;
// (b) the daemon's fast path (withImportOwnership) on a new snapshot of the same records (what
// every node does on a change elsewhere: unchanged nodes come from the memo); (c) the same with
// one pod added (a borrowed address of one node): that node computed again.
//
//   npx tsx bench/ownership_render.ts [--nodes 1000] [--before /work/main/src/node/bgp_state.ts]
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { Node, WorkloadEndpoint } from "../src/api/node.js";
import { type BgpSnapshot, renderBgp } from "../src/node/bgp_state.js";
import { withImportOwnership } from "../src/node/import_ownership.js";

const { values } = parseArgs({
  options: { nodes: { type: "string", default: "1000" }, before: { type: "string" } },
});
const N = Number(values.nodes);
const V3 = "projectcalico.org/v3";
const nodes: Node[] = [];
const weps: WorkloadEndpoint[] = [];
const affinities: BgpSnapshot["affinities"] = [];
const wep = (name: string, node: string, ip: string) =>
  ({
    apiVersion: V3,
    kind: "WorkloadEndpoint",
    metadata: { name, namespace: "default" },
    spec: { node, interfaceName: `ocl${name}`.slice(0, 15), ipNetworks: [`${ip}/32`] },
  }) as WorkloadEndpoint;
for (let i = 0; i < N; i++) {
  const name = `n${i}`;
  nodes.push({
    apiVersion: V3,
    kind: "Node",
    metadata: { name },
    spec: { bgp: { ipv4Address: `10.${(i >> 8) & 255}.${i & 255}.1/8` } },
  } as Node);
  const base = `10.244.${i >> 2}.${(i & 3) * 64}`;
  affinities.push({ node: name, cidr: `${base}/26`, state: "confirmed" });
  for (let j = 0; j < 30; j++)
    weps.push(wep(`w${i}-${j}`, name, `10.244.${i >> 2}.${(i & 3) * 64 + j + 1}`));
}
const snap: BgpSnapshot = {
  nodes,
  workloadEndpoints: weps,
  pools: [
    { apiVersion: V3, kind: "IPPool", metadata: { name: "p" }, spec: { cidr: "10.244.0.0/16" } },
  ] as never,
  affinities,
  bgpConfigurations: [],
  bgpPeers: [],
};
const opts = { statusSocket: "/tmp/ownership-render.sock" };
type Render = typeof renderBgp;
const before: Render | undefined = values.before
  ? ((await import(values.before)) as { renderBgp: Render }).renderBgp
  : undefined;
const time = (f: () => unknown, n: number) => {
  const t0 = performance.now();
  for (let k = 0; k < n; k++) f();
  return (performance.now() - t0) / n;
};
const out: string[] = [];
for (let r = 0; r < 3; r++) {
  if (before)
    out.push(`render, --before: ${time(() => before({ ...snap }, "n0", opts), 3).toFixed(0)} ms`);
  out.push(
    `render, this build: ${time(() => renderBgp({ ...snap }, "n0", opts), 3).toFixed(0)} ms`,
  );
}
const cfg = renderBgp(snap, "n0", opts).config;
if (!cfg) throw new Error("no config rendered");
out.push(
  `fast path, records unchanged: ${time(() => withImportOwnership(cfg, { ...snap }), 5).toFixed(1)} ms`,
);
let k = 0;
const added = time(() => {
  weps.push(wep(`x${k}`, "n7", `10.244.200.${++k}`));
  withImportOwnership(cfg, { ...snap });
}, 5);
out.push(`fast path, one pod added (a borrowed address of one node): ${added.toFixed(1)} ms`);
const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
console.log(`${N} Nodes, ${30 * N} WorkloadEndpoints (load ${load})\n${out.join("\n")}`);
