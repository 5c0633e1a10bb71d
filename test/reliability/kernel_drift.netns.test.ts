// Kernel drift (issue 17): the real `ocelot node run` (no BGP, --netns) with FelixConfiguration
// iptablesRefreshInterval and routeRefreshInterval 2 s (the periodic resync left at 60 s), with
// one pod wired by the real `ocelot-cni` and a NetworkPolicy whose source selector makes an
// ipset. Others then change the node's kernel for real: a pod route of protocol 202 deleted,
// one of our `ocl-` policy chains flushed and the ipset it used destroyed, a route of protocol
// 202 that nobody set added, and the pod's host veth deleted (then recreated, as a CNI re-ADD
// would). Each is read back from the kernel (ip -j route, iptables-save, ipset list): put back,
// or for the route nobody set swept (after the agent's 30 s grace for the CNI plugin's routes),
// within its bound (that route is added once the daemon has converged and watched from then on,
// while the other drift is injected: the grace runs beside them, not after them); the veth is not recreated by the daemon (the CNI owns it) and no route of
// ours points at it while it is gone. A foreign route (protocol static), a foreign chain and a
// foreign ipset stay as they were throughout. Each repair is read from /metrics as an increment
// of ocelot_agent_drift_repairs_total{kind=...} (and, for routes, of the agent FIB's own
// ocelot_fib_routes_restored_total / ocelot_fib_routes_swept_total). DRIFT_ROUNDS repeats the injections (default 3;
// 20 under OCELOT_SOAK=1, `npm run test:soak`).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyResource, ResourceClient } from "../../src/api/client.js";
import { kindOf } from "../../src/api/registry.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { addUplink } from "../helpers/cni.js";
import { WAIT_MS } from "../helpers/limits.js";
import { link, Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import {
  cni,
  daemonTestsUnavailable,
  type NodeProcess,
  netconf,
  podEnv,
  type ReadyNode,
  routes,
  startReadyNode,
  sysctl,
} from "../node/harness.js";

const skip = skipWithReason(
  "kernel drift netns",
  netnsUnavailableReason() ?? daemonTestsUnavailable(),
);
const NODE = "drift-node";
const POOL = "10.77.0.0/16";
const WEP = kindOf("projectcalico.org/v3", "WorkloadEndpoint");
const ROUNDS = Number(process.env.DRIFT_ROUNDS ?? (process.env.OCELOT_SOAK === "1" ? 20 : 3));
/**
 * Each repair asserted within: the refresh intervals (2 s) plus a loaded machine's slack, well
 * under the 60 s periodic resync (which alone would miss it).
 */
const BOUND_MS = 15_000;
/** The agent's grace for routes of 202 nobody set (30 s), a refresh and slack. */
const SWEEP_BOUND_MS = 45_000;

describe.skipIf(skip)("kernel drift repaired within the resync bound, counted by kind", () => {
  let dir: string;
  let url: string;
  let store: SqliteDatastore;
  let node: Netns;
  let pod: Netns;
  let daemon: NodeProcess | undefined;
  let get: ReadyNode["get"];
  let podIp = "";
  let iface = "";
  // Each foreign object's name carries the run's prefix (the namespace names do).
  let foreignChain = "";
  let foreignSet = "";
  const foreignRoute = "198.51.100.0/24";
  const figures: string[] = [];
  /** The route of 202 nobody set: when added, the counts then, and when it was seen swept. */
  const stray = "203.0.113.0/24";
  let strayAdded:
    | {
        t0: number;
        before: Map<string, number>;
        sweptBefore: number;
        swept: Promise<number | Error>;
      }
    | undefined;

  const save = () => node.exec("iptables-save", "-t", "filter");
  const ipsetList = () => node.exec("ipset", "list", "-n").split("\n").filter(Boolean);
  const members = (set: string) =>
    node
      .exec("ipset", "list", set)
      .split("Members:")[1]
      ?.split("\n")
      .map((l) => l.trim())
      .filter(Boolean) ?? [];
  /** The rules of one chain, as iptables-save prints them. */
  const rulesOf = (text: string, chain: string) =>
    text.split("\n").filter((l) => l.startsWith(`-A ${chain} `));
  const repairs = async (): Promise<Map<string, number>> => {
    const text = (await get("/metrics")).text;
    const out = new Map<string, number>();
    for (const m of text.matchAll(/^ocelot_agent_drift_repairs_total\{kind="([^"]+)"\} (\d+)$/gm))
      out.set(m[1] as string, Number(m[2]));
    return out;
  };
  /** The agent FIB's own counter (ocelot_fib_routes_{restored,swept}_total{fib="agent"}). */
  const fibCounter = async (what: "restored" | "swept") => {
    const text = (await get("/metrics")).text;
    const m = new RegExp(`^ocelot_fib_routes_${what}_total\\{fib="agent"\\} (\\d+)$`, "m").exec(
      text,
    );
    return m ? Number(m[1]) : Number.NaN;
  };
  /** Waits until every kind counted at least once more than in before. */
  const counted = async (before: Map<string, number>, kinds: string[]) => {
    await waitFor(
      `drift counted for ${kinds.join(", ")}`,
      async () => {
        const now = await repairs();
        return kinds.every((k) => (now.get(k) ?? 0) > (before.get(k) ?? 0));
      },
      WAIT_MS,
      200,
    ).catch(async (e) => {
      throw new Error(
        `${(e as Error).message}\nbefore ${JSON.stringify([...before])}\nnow ${JSON.stringify([
          ...(await repairs()),
        ])}\n${daemon?.log.split("\n").slice(-40).join("\n")}`,
      );
    });
  };
  /** Nothing foreign touched: the static route, the foreign chain and its rule, the foreign set. */
  const foreignIntact = () => {
    expect(routes(node, "static").map((r) => r.dst)).toContain(foreignRoute);
    expect(rulesOf(save(), foreignChain)).toEqual([`-A ${foreignChain} -s 192.0.2.99/32 -j DROP`]);
    expect(members(foreignSet)).toEqual(["192.0.2.98"]);
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-drift-"));
    url = `file:${join(dir, "store.db")}`;
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "pool", POOL, { blockSize: 26 });
    node = Netns.create("dr");
    pod = Netns.create("drp");
    foreignChain = `F-${node.name}`.slice(0, 28);
    foreignSet = `f-${node.name}`.slice(0, 31);
    addUplink(node, "192.0.2.20/24");
    await applyResource(store, {
      apiVersion: "projectcalico.org/v3",
      kind: "FelixConfiguration",
      metadata: { name: "default" },
      spec: { iptablesRefreshInterval: "2s", routeRefreshInterval: "2s" },
    });
    ({ daemon, get } = await startReadyNode(node, {
      nodename: NODE,
      ip: "192.0.2.20/24",
      datastore: url,
      dir,
      // The periodic resync stays at its 60 s: the refresh intervals alone bound the repairs.
      extra: ["--log-level", "info"],
    }));
    const r = await cni(node, "ADD", podEnv(pod, "web-1"), netconf(url, NODE, "pool"));
    if (r.code !== 0) throw new Error(r.stdout + r.stderr);
    const result = JSON.parse(r.stdout);
    podIp = (result.ips[0].address as string).split("/")[0] as string;
    iface = result.interfaces[0].name;
    // The pod's labels, as Kubernetes would write them, and a policy whose source selector
    // makes an ipset of the pod's address.
    const client = new ResourceClient(store);
    const wep = (await client.list(WEP as NonNullable<typeof WEP>, "default")).items[0];
    if (!wep) throw new Error("no WorkloadEndpoint after ADD");
    const { resourceVersion: _rv, ...metadata } = wep.metadata;
    await applyResource(store, {
      ...wep,
      metadata: { ...metadata, labels: { ...metadata.labels, app: "web" } },
    });
    await applyResource(store, {
      apiVersion: "projectcalico.org/v3",
      kind: "NetworkPolicy",
      metadata: { name: "web-from-web", namespace: "default" },
      spec: {
        selector: "app == 'web'",
        ingress: [{ action: "Allow", protocol: "TCP", source: { selector: "app == 'web'" } }],
      },
    });
    // Foreign state the daemon must never touch.
    node.ip("route", "add", "blackhole", foreignRoute, "proto", "static");
    node.exec("iptables", "-N", foreignChain);
    node.exec("iptables", "-A", foreignChain, "-s", "192.0.2.99/32", "-j", "DROP");
    node.exec("ipset", "create", foreignSet, "hash:ip");
    node.exec("ipset", "add", foreignSet, "192.0.2.98");
  });

  afterAll(async () => {
    if (process.env.DRIFT_LOG && daemon) writeFileSync(process.env.DRIFT_LOG, daemon.log);
    await daemon?.stop();
    for (const ns of [pod, node]) ns?.destroy();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (figures.length) console.log(figures.join("\n"));
  });

  /** Our ipset holding the pod's address, and the ocl- chain whose rules use it. */
  const policyState = () => {
    const set = ipsetList().find((s) => s.startsWith("ocl") && members(s).includes(podIp));
    if (!set) return undefined;
    const text = save();
    const rule = text.split("\n").find((l) => l.startsWith("-A ocl-") && l.includes(set));
    const chain = rule?.split(" ")[1];
    return chain ? { set, chain, rules: rulesOf(text, chain) } : undefined;
  };

  it("converges first: the pod's route, the policy's chain and ipset", async () => {
    await waitFor(
      "the pod's route and the policy's set and chain",
      () => routes(node, "202").some((x) => x.dst === podIp && x.dev === iface) && policyState(),
      WAIT_MS,
      100,
    );
    foreignIntact();
    // The stray route, watched from now on (every 200 ms, bounded) while the next tests run.
    const before = await repairs();
    const sweptBefore = await fibCounter("swept");
    const t0 = Date.now();
    node.ip("route", "add", "blackhole", stray, "proto", "202");
    const swept = waitFor(
      "the stray route swept",
      () => !routes(node, "202").some((x) => x.dst === stray),
      SWEEP_BOUND_MS + 15_000,
      200,
    ).then(
      () => Date.now() - t0,
      (e: Error) => e,
    );
    strayAdded = { t0, before, sweptBefore, swept };
  });

  it("a pod route deleted: put back, counted as route", async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const before = await repairs();
      const restoredBefore = await fibCounter("restored");
      expect(restoredBefore, "ocelot_fib_routes_restored_total on /metrics").not.toBeNaN();
      const t0 = Date.now();
      node.ip("route", "del", `${podIp}/32`, "dev", iface);
      await waitFor(
        "the route back",
        () => routes(node, "202").some((x) => x.dst === podIp && x.dev === iface),
        WAIT_MS,
        20,
      );
      const ms = Date.now() - t0;
      figures.push(`route deleted: back in ${ms} ms`);
      expect(ms).toBeLessThan(BOUND_MS);
      await counted(before, ["route"]);
      // The FIB's own count of routes put back, beside the agent's drift counter.
      expect(await fibCounter("restored")).toBe(restoredBefore + 1);
    }
    foreignIntact();
  });

  it("an ocl- chain flushed and its ipset destroyed: both back at the next read-back, counted", async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const want = policyState();
      if (!want) throw new Error("no policy chain and set");
      const before = await repairs();
      const t0 = Date.now();
      // The set is in use by the chain's rule: the chain first, as someone cleaning up would.
      node.exec("iptables", "-F", want.chain);
      node.exec("ipset", "destroy", want.set);
      expect(ipsetList()).not.toContain(want.set);
      expect(rulesOf(save(), want.chain)).toEqual([]);
      await waitFor(
        "the chain's rules and the set back",
        () => {
          const now = policyState();
          return (
            now?.set === want.set &&
            JSON.stringify(rulesOf(save(), want.chain)) === JSON.stringify(want.rules)
          );
        },
        WAIT_MS,
        50,
      );
      const ms = Date.now() - t0;
      figures.push(`chain flushed + ipset destroyed: back in ${ms} ms`);
      expect(ms).toBeLessThan(BOUND_MS);
      await counted(before, ["iptables", "ipset"]);
    }
    foreignIntact();
  });

  it("the pod's host veth deleted: not recreated, no route to it; recreated, configured again", async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const before = await repairs();
      const gone = Date.now();
      const seen = daemon?.lines.length ?? 0;
      node.ip("link", "del", iface);
      // The kernel drops the route with the link; the daemon waits for the interface.
      await waitFor(
        "the daemon waiting for the interface",
        () =>
          daemon?.lines
            .slice(seen)
            .some(
              (l) =>
                l.msg === "Agent: waiting for workload interfaces" &&
                JSON.stringify(l.missing).includes(iface),
            ),
        WAIT_MS,
        100,
      );
      const waited = Date.now() - gone;
      figures.push(`veth deleted: the agent waiting for it after ${waited} ms`);
      expect(waited).toBeLessThan(BOUND_MS);
      expect(routes(node, "202").some((x) => x.dev === iface)).toBe(false);
      expect(
        node
          .ipJson<unknown[]>("link", "show")
          .some((l) => JSON.stringify(l).includes(`"${iface}"`)),
      ).toBe(false);
      await counted(before, ["route"]);
      // The runtime wires the pod again (as a CNI re-ADD would, same interface name).
      const mid = await repairs();
      const t0 = Date.now();
      link(node, iface, undefined, pod, "eth0", `${podIp}/32`);
      await waitFor(
        "the veth configured again (route, proxy ARP, MAC)",
        () =>
          routes(node, "202").some((x) => x.dst === podIp && x.dev === iface) &&
          sysctl(node, `net.ipv4.conf.${iface}.proxy_arp`) === "1" &&
          node.ipJson<{ address: string }[]>("link", "show", iface)[0]?.address ===
            "ee:ee:ee:ee:ee:ee",
        WAIT_MS,
        50,
      );
      const ms = Date.now() - t0;
      figures.push(`veth deleted and recreated: configured in ${ms} ms`);
      expect(ms).toBeLessThan(BOUND_MS);
      await counted(mid, ["link"]);
    }
    foreignIntact();
  });

  it("a route of protocol 202 nobody set (added after the first convergence): swept after the grace, counted as route_swept", async () => {
    if (!strayAdded) throw new Error("the stray route was not added (the first test failed)");
    const ms = await strayAdded.swept;
    if (ms instanceof Error) throw ms;
    figures.push(`route of 202 nobody set: swept in ${ms} ms (grace 30 s)`);
    expect(ms).toBeGreaterThanOrEqual(30_000);
    expect(ms).toBeLessThan(SWEEP_BOUND_MS);
    await counted(strayAdded.before, ["route_swept"]);
    // The agent FIB counts it too (at least this one: the other faults run beside the grace).
    expect(
      await fibCounter("swept"),
      "ocelot_fib_routes_swept_total{fib=agent}",
    ).toBeGreaterThanOrEqual(strayAdded.sweptBefore + 1);
    // Ours are still there.
    expect(routes(node, "202").some((x) => x.dst === podIp)).toBe(true);
    foreignIntact();
  });
});
