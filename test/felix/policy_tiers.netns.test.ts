// Tiers and network sets with real traffic, applied by the agent (applyDataplane) in a node
// namespace with three pods a, b, c (IPv4):
// - tier "security" (order 100) before the default tier: c's pings to b are denied there even
//   though the default tier allows ICMP; a's are passed on and allowed; c's TCP connects (which
//   the security tier does not decide) meet its end (Deny) until its defaultAction becomes Pass
//   and the default tier allows them; the node's own pings are not policed (as in Felix);
// - a GlobalNetworkSet labelled role=blocked that a Deny rule selects: changing its nets moves
//   the block from c to a by rewriting the ipset only (no iptables-restore at all);
// - a doNotTrack policy (host endpoints only) is not applied to pods.
// Pings are counted on both sides: the receiver's interface counters rise only when it answers.

import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyDataplane } from "../../src/felix/apply.js";
import { type DataplaneInput, renderDataplane } from "../../src/felix/dataplane.js";
import {
  fromGlobalNetworkPolicy,
  type PolicyInput,
  type PolicyNetworkSet,
  type PolicyTier,
} from "../../src/felix/policy.js";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { addUplink } from "../helpers/cni.js";
import { Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  addPod,
  echoRepliesSent,
  ping,
  policyEndpointsOf,
  spawnClosingServer,
  tcpConnects,
  workloadsOf,
} from "../helpers/pods.js";

const reason = netnsUnavailableReason() ?? addonUnavailableReason();
const skip = skipWithReason("felix tiers and network sets (netns)", reason);

const PODS = {
  a: { iface: "ocltiaaaaaaaaa", v4: "10.244.6.1" },
  b: { iface: "ocltibbbbbbbbb", v4: "10.244.6.2" },
  c: { iface: "ocltiddddddddd", v4: "10.244.6.3" },
} as const;
type Pod = keyof typeof PODS;

const gnp = (name: string, spec: Record<string, unknown>) =>
  fromGlobalNetworkPolicy({ metadata: { name }, spec: spec as never });

describe.skipIf(skip)("tiers and network sets applied in a namespace", () => {
  let node: Netns;
  const pods = {} as Record<Pod, Netns>;
  let fib: KernelFib;
  let server: ChildProcess | undefined;
  const PORT = 8082;

  const endpoints = policyEndpointsOf(PODS);
  const input = (p: Omit<PolicyInput, "endpoints">): DataplaneInput => ({
    workloads: workloadsOf(PODS),
    pools: [{ cidr: "10.244.0.0/16", natOutgoing: false }],
    policy: { endpoints, ...p },
  });
  const apply = (p: Omit<PolicyInput, "endpoints">) =>
    applyDataplane(renderDataplane(input(p)), { netns: node.name, fib });

  beforeAll(async () => {
    node = Netns.create("ftn");
    addUplink(node, "192.0.2.31/24");
    for (const app of Object.keys(PODS) as Pod[]) {
      pods[app] = addPod(node, `ft${app}`, PODS[app].iface, PODS[app].v4);
    }
    fib = await KernelFib.open({ netns: node.name, protocols: [202], watch: false });
    await apply({ policies: [] });
    await waitFor(
      "a to reach b before any policy",
      () => ping(pods.a, PODS.b.v4, true),
      60_000,
      200,
    );
    server = spawnClosingServer(pods.b, PORT);
    await waitFor(
      "b's server to answer c",
      () => tcpConnects(pods.c, PODS.b.v4, PORT, true),
      60_000,
      200,
    );
  });

  afterAll(async () => {
    if (server?.pid !== undefined && server.exitCode === null) server.kill("SIGKILL");
    await fib?.close();
    for (const p of Object.values(pods)) p?.destroy();
    node?.destroy();
  });

  const tiered = (security: PolicyTier["defaultAction"]) => ({
    tiers: [{ name: "security", order: 100, defaultAction: security }] as PolicyTier[],
    policies: [
      gnp("security.b", {
        tier: "security",
        selector: "app == 'b'",
        ingress: [
          { action: "Deny", protocol: "ICMP", source: { selector: "app == 'c'" } },
          { action: "Pass", source: { selector: "app == 'a'" } },
        ],
      }),
      gnp("allow-icmp-to-b", {
        selector: "app == 'b'",
        ingress: [
          { action: "Allow", protocol: "ICMP" },
          { action: "Allow", protocol: "TCP" },
        ],
      }),
    ],
  });

  it("orders tiers: security denies c before the default tier allows, passes a, ends in Deny", async () => {
    await apply(tiered("Deny"));
    const before = echoRepliesSent(pods.b);
    expect(ping(pods.c, PODS.b.v4, false)).toBe(false);
    // The denied pings never reached b: it answered none of them.
    expect(echoRepliesSent(pods.b) - before).toBe(0);
    // c's TCP is not decided in the security tier: its end (Deny) drops it.
    expect(tcpConnects(pods.c, PODS.b.v4, PORT, false)).toBe(false);
    // The node's own traffic to a pod is not policed (Felix's filterOutputChain).
    expect(ping(node, PODS.b.v4, true)).toBe(true);
    expect(ping(pods.a, PODS.b.v4, true)).toBe(true);
    expect(echoRepliesSent(pods.b) - before).toBeGreaterThanOrEqual(1);
    const save = node.exec("iptables-nft-save", "-t", "filter");
    expect(save).toContain(`-A ocl-tw-${PODS.b.iface} -j MARK --set-xmark 0x0/0x30000`);
  });

  it("a tier whose defaultAction is Pass lets what it does not decide reach the next tier", async () => {
    await apply(tiered("Pass"));
    const before = echoRepliesSent(pods.b);
    expect(ping(pods.c, PODS.b.v4, false)).toBe(false);
    expect(echoRepliesSent(pods.b) - before).toBe(0);
    expect(tcpConnects(pods.c, PODS.b.v4, PORT, true)).toBe(true);
  });

  const blocked = (ip: string): Omit<PolicyInput, "endpoints"> => ({
    networkSets: [{ labels: { role: "blocked" }, nets: [`${ip}/32`] }] as PolicyNetworkSet[],
    policies: [
      gnp("block-listed", {
        selector: "app == 'b'",
        ingress: [
          { action: "Deny", source: { selector: "role == 'blocked'" } },
          { action: "Allow", protocol: "ICMP" },
        ],
      }),
    ],
  });

  it("a GlobalNetworkSet's nets are denied through the rule selector that matches its labels", async () => {
    await apply(blocked(PODS.c.v4));
    expect(ping(pods.a, PODS.b.v4, true)).toBe(true);
    expect(ping(pods.c, PODS.b.v4, false)).toBe(false);
  });

  it("changing the set rewrites only its ipset: no iptables-restore, and the block moves", async () => {
    const chainsBefore = node.exec("iptables-nft-save", "-t", "filter").replace(/^[#:].*$/gm, "");
    const r = await apply(blocked(PODS.a.v4));
    expect(r.iptables).toEqual([]);
    expect(r.ipsets).toContain(`${PODS.a.v4}`);
    expect(node.exec("iptables-nft-save", "-t", "filter").replace(/^[#:].*$/gm, "")).toBe(
      chainsBefore,
    );
    const before = echoRepliesSent(pods.b);
    expect(ping(pods.a, PODS.b.v4, false)).toBe(false);
    expect(echoRepliesSent(pods.b) - before).toBe(0);
    expect(ping(pods.c, PODS.b.v4, true)).toBe(true);
  });

  it("a doNotTrack policy (host endpoints only) is not applied to pods", async () => {
    const r = renderDataplane(
      input({
        policies: [
          gnp("raw-deny", {
            selector: "all()",
            doNotTrack: true,
            applyOnForward: true,
            ingress: [{ action: "Deny" }],
          }),
        ],
      }),
    );
    // No endpoint or policy chain: the dispatch alone.
    expect(
      r.families[0]?.tables
        .find((t) => t.table === "filter")
        ?.chains.filter((c) => /^ocl-(tw|fw|pi|po)-/.test(c.name)),
    ).toEqual([]);
    await applyDataplane(r, { netns: node.name, fib });
    expect(ping(pods.a, PODS.b.v4, true)).toBe(true);
  });
});
