// Profiles and the workload-to-host action with real traffic, applied by the agent
// (applyDataplane) in a node namespace with three pods a, b, c (IPv4), as Calico orders them:
// - a Profile listed by b (its ingress allows ICMP from app=a only) polices b with no policy:
//   a's pings reach b, c's are dropped before b sees them;
// - profiles come after policies: a policy allowing c lets c in, and then a (which no policy
//   allows) meets the end of the default tier; a Pass for a hands it on to the profile, which
//   allows it;
// - defaultEndpointToHostAction: Drop cuts a pod's pings to its node, Accept and Return let them
//   through.
// Pings are counted on both sides: the receiver's ICMP counters rise only when it answers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyDataplane } from "../../src/felix/apply.js";
import { type DataplaneInput, renderDataplane } from "../../src/felix/dataplane.js";
import type { EndpointToHostAction } from "../../src/felix/host_endpoint.js";
import {
  fromGlobalNetworkPolicy,
  type Policy,
  type PolicyProfile,
} from "../../src/felix/policy.js";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { addUplink } from "../helpers/cni.js";
import { Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import { addPod, echoRepliesSent, ping, policyEndpointsOf, workloadsOf } from "../helpers/pods.js";

const reason = netnsUnavailableReason() ?? addonUnavailableReason();
const skip = skipWithReason("felix profiles (netns)", reason);

const NODE = "192.0.2.32";
const PODS = {
  a: { iface: "oclpraaaaaaaaa", v4: "10.244.7.1" },
  b: { iface: "oclprbbbbbbbbb", v4: "10.244.7.2" },
  c: { iface: "oclprddddddddd", v4: "10.244.7.3" },
} as const;
type Pod = keyof typeof PODS;

const gnp = (name: string, spec: Record<string, unknown>): Policy =>
  fromGlobalNetworkPolicy({ metadata: { name }, spec: spec as never });

describe.skipIf(skip)("profiles and the workload-to-host action applied in a namespace", () => {
  let node: Netns;
  const pods = {} as Record<Pod, Netns>;
  let fib: KernelFib;

  const endpoints = policyEndpointsOf(PODS).map((e) =>
    e.id === "default/b" ? { ...e, profiles: ["only-a"] } : e,
  );
  const input = (
    policies: Policy[],
    profiles: PolicyProfile[],
    action?: EndpointToHostAction,
  ): DataplaneInput => ({
    workloads: workloadsOf(PODS),
    pools: [{ cidr: "10.244.0.0/16", natOutgoing: false }],
    policy: { endpoints, policies, profiles },
    host: {
      hostEndpoints: [],
      ...(action !== undefined ? { defaultEndpointToHostAction: action } : {}),
    },
  });
  const apply = (policies: Policy[], profiles: PolicyProfile[], action?: EndpointToHostAction) =>
    applyDataplane(renderDataplane(input(policies, profiles, action)), { netns: node.name, fib });

  beforeAll(async () => {
    node = Netns.create("fpn");
    addUplink(node, `${NODE}/24`);
    for (const app of Object.keys(PODS) as Pod[]) {
      pods[app] = addPod(node, `fp${app}`, PODS[app].iface, PODS[app].v4);
    }
    fib = await KernelFib.open({ netns: node.name, protocols: [202], watch: false });
    await apply([], []);
    await waitFor(
      "a to reach b before any policy",
      () => ping(pods.a, PODS.b.v4, true),
      60_000,
      200,
    );
  });

  afterAll(async () => {
    await fib?.close();
    for (const p of Object.values(pods)) p?.destroy();
    node?.destroy();
  });

  const ONLY_A: PolicyProfile = {
    name: "only-a",
    ingress: [{ action: "Allow", protocol: "ICMP", source: { selector: "app == 'a'" } }],
    egress: [{ action: "Allow" }],
  };

  it("a profile with rules polices its endpoint with no policy: a in, c dropped", async () => {
    await apply([], [ONLY_A]);
    const before = echoRepliesSent(pods.b);
    expect(ping(pods.c, PODS.b.v4, false)).toBe(false);
    expect(echoRepliesSent(pods.b) - before).toBe(0);
    expect(ping(pods.a, PODS.b.v4, true)).toBe(true);
    expect(echoRepliesSent(pods.b) - before).toBeGreaterThanOrEqual(1);
    // b's egress is its profile's too (Allow): b reaches c; c is not policed.
    expect(ping(pods.b, PODS.c.v4, true)).toBe(true);
    const save = node.exec("iptables-nft-save", "-t", "filter");
    expect(save).toMatch(new RegExp(`-A ocl-tw-${PODS.b.iface} -j ocl-pri-\\S+`));
    expect(save).toContain(`-A ocl-tw-${PODS.b.iface} -j DROP`);
    expect(save).not.toContain(`ocl-tw-${PODS.c.iface}`);
  });

  it("profiles come after policies: end of tier drops before them, a Pass reaches them", async () => {
    const allowC = gnp("allow-c", {
      selector: "app == 'b'",
      ingress: [{ action: "Allow", protocol: "ICMP", source: { selector: "app == 'c'" } }],
    });
    await apply([allowC], [ONLY_A]);
    const before = echoRepliesSent(pods.b);
    expect(ping(pods.a, PODS.b.v4, false)).toBe(false);
    expect(echoRepliesSent(pods.b) - before).toBe(0);
    expect(ping(pods.c, PODS.b.v4, true)).toBe(true);
    const passA = gnp("allow-c", {
      selector: "app == 'b'",
      ingress: [
        { action: "Allow", protocol: "ICMP", source: { selector: "app == 'c'" } },
        { action: "Pass", source: { selector: "app == 'a'" } },
      ],
    });
    await apply([passA], [ONLY_A]);
    const mid = echoRepliesSent(pods.b);
    expect(ping(pods.a, PODS.b.v4, true)).toBe(true);
    expect(echoRepliesSent(pods.b) - mid).toBeGreaterThanOrEqual(1);
    expect(ping(pods.c, PODS.b.v4, true)).toBe(true);
  });

  it("defaultEndpointToHostAction: Drop cuts pod-to-node traffic, Accept and Return do not", async () => {
    await apply([], [], "Drop");
    const before = echoRepliesSent(node);
    expect(ping(pods.a, NODE, false)).toBe(false);
    expect(echoRepliesSent(node) - before).toBe(0);
    expect(node.exec("iptables-nft-save", "-t", "filter")).toContain(
      "-A ocl-INPUT -i ocl+ -g ocl-wl-to-host",
    );
    // Pod to pod is forwarded, not to the host: untouched; the node's own pings to a pod get
    // their replies.
    expect(ping(pods.a, PODS.c.v4, true)).toBe(true);
    expect(ping(node, PODS.a.v4, true)).toBe(true);
    for (const action of ["Accept", "Return"] as const) {
      await apply([], [], action);
      const b = echoRepliesSent(node);
      expect(ping(pods.a, NODE, true)).toBe(true);
      expect(echoRepliesSent(node) - b).toBeGreaterThanOrEqual(1);
    }
  });
});
