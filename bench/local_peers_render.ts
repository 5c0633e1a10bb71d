// Benchmark of local workload peering's cost in the node daemon's renders (pure, no kernel): with
// local peering in use, every WorkloadEndpoint change renders the speaker's config again
// (renderBgp), and the agent's input carries each pod's host-side addresses (agentInput). For a
// node with N pods (--pods, default 2000) of which S carry the selected label (--selected, default
// 20), each render is timed with the BGPPeer with localWorkloadSelector present and, as the
// reference in the same loop, without it (alternating, --runs each, default 30); prints the
// medians and their ratios. Usage: npx tsx bench/local_peers_render.ts [--pods 2000]
// [--selected 20] [--runs 30]
import { parseArgs } from "node:util";
import type { BGPConfiguration, BGPPeer } from "../src/api/bgp.js";
import type { Node, WorkloadEndpoint } from "../src/api/node.js";
import { agentInput } from "../src/node/agent_state.js";
import { type BgpSnapshot, renderBgp } from "../src/node/bgp_state.js";

const { values } = parseArgs({
  options: {
    pods: { type: "string", default: "2000" },
    selected: { type: "string", default: "20" },
    runs: { type: "string", default: "30" },
  },
});
const pods = Number(values.pods);
const selected = Number(values.selected);
const runs = Number(values.runs);
const V3 = "projectcalico.org/v3";

const node = {
  apiVersion: V3,
  kind: "Node",
  metadata: { name: "n1", labels: {} },
  spec: { bgp: { ipv4Address: "10.0.0.1/24" } },
} as Node;
const weps = Array.from({ length: pods }, (_, i) => ({
  apiVersion: V3,
  kind: "WorkloadEndpoint",
  metadata: {
    name: `n1-k8s-pod${i}-eth0`,
    namespace: "default",
    labels: { app: `a${i % 50}`, ...(i < selected ? { color: "red" } : {}) },
  },
  spec: {
    node: "n1",
    interfaceName: `oclb${i.toString(16).padStart(8, "0")}`,
    ipNetworks: [`10.65.${Math.floor(i / 250)}.${(i % 250) + 1}/32`],
  },
})) as unknown as WorkloadEndpoint[];
const config = {
  apiVersion: V3,
  kind: "BGPConfiguration",
  metadata: { name: "default" },
  spec: { nodeToNodeMeshEnabled: false, localWorkloadPeeringIPV4: "169.254.0.179" },
} as BGPConfiguration;
const peer = {
  apiVersion: V3,
  kind: "BGPPeer",
  metadata: { name: "to-red" },
  spec: { localWorkloadSelector: "color == 'red'", asNumber: 65030 },
} as BGPPeer;
const tor = {
  apiVersion: V3,
  kind: "BGPPeer",
  metadata: { name: "tor" },
  spec: { peerIP: "10.0.0.254", asNumber: 65000 },
} as BGPPeer;

const snap = (withPeer: boolean): BgpSnapshot => ({
  nodes: [node],
  workloadEndpoints: weps,
  pools: [],
  affinities: [],
  bgpConfigurations: withPeer ? [config] : [],
  bgpPeers: withPeer ? [tor, peer] : [tor],
});

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const time = (f: () => unknown) => {
  const t = performance.now();
  f();
  return performance.now() - t;
};

const on = snap(true);
const off = snap(false);
const opts = { statusSocket: "/tmp/x.sock" };
const peersOn = renderBgp(on, "n1", opts).config?.peers.length;
if (peersOn !== selected + 1) throw new Error(`expected ${selected + 1} peers, got ${peersOn}`);
const t = {
  bgpOn: [] as number[],
  bgpOff: [] as number[],
  agentOn: [] as number[],
  agentOff: [] as number[],
};
for (let i = 0; i < runs; i++) {
  const first = i % 2 === 0;
  for (const which of first ? [true, false] : [false, true]) {
    const s = which ? on : off;
    (which ? t.bgpOn : t.bgpOff).push(time(() => renderBgp(s, "n1", opts)));
    (which ? t.agentOn : t.agentOff).push(time(() => agentInput(s, "n1")));
  }
}
const f = (x: number) => x.toFixed(2);
console.log(
  `${pods} pods, ${selected} selected, ${runs} runs each (load ${(await import("node:os")).loadavg()[0]?.toFixed(1)})`,
);
console.log(
  `renderBgp: with local peering ${f(median(t.bgpOn))} ms, without ${f(median(t.bgpOff))} ms: ${f(median(t.bgpOn) / median(t.bgpOff))}x`,
);
console.log(
  `agentInput: with local peering ${f(median(t.agentOn))} ms, without ${f(median(t.agentOff))} ms: ${f(median(t.agentOn) / median(t.agentOff))}x`,
);
