// The pool's vxlanMode changed on a live cluster: two nodes on one subnet running the real
// `ocelot node run` with the BGP speaker (so Never routes natively over BGP), a pod on each and
// a continuous ping between them while the mode goes Never -> CrossSubnet -> Always ->
// CrossSubnet -> Never. At each step the kernel shows the route form of that mode (BGP's
// protocol 201 via the node; the agent's 202 via the node; 202 via the tunnel address dev
// vxlan.ocelot onlink); the pods keep their addresses; at most one echo is lost per change. In
// Always: the node's own traffic reaches the remote pod over the tunnel, NAT-outgoing still
// masquerades a pod's traffic to the outside, and a policy denying the pod's ingress is
// enforced over the tunnel (the tunnel device is not policed as a workload).
import { type ChildProcess, spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HANG_MS } from "../helpers/limits.js";
import type { Netns } from "../helpers/netns.js";
import { skipWithReason, waitFor } from "../helpers/netns.js";
import { daemonTestsUnavailable } from "./harness.js";
import {
  blockOf,
  buildLab,
  destroyLab,
  HOOK_MS,
  type Lab,
  type LabNode,
  labToolsMissing,
  ping,
  routesOf,
  seenSource,
  setPools,
  waitPing,
} from "./overlay_lab.js";

const skip = skipWithReason(
  "overlay mode changes netns",
  daemonTestsUnavailable() ?? labToolsMissing(),
);
const OUTSIDE = "198.51.100.1";

describe.skipIf(skip)("overlay: vxlanMode changes on a live cluster", () => {
  let lab: Lab;
  let a: LabNode;
  let b: LabNode;
  let pinger: ChildProcess | undefined;
  const logs = () => lab.nodes.map((n) => `--- ${n.name}\n${n.daemon?.log}`).join("\n");

  beforeAll(async () => {
    lab = await buildLab(
      "ovm",
      [["ovm-a", "ovm-b"]],
      () => ["--resync-interval", "5s"],
      [4],
      { vxlanMode: "Never", natOutgoing: true },
      (l) => {
        lab = l;
      },
    );
    [a, b] = lab.nodes as [LabNode, LabNode];
    // "The internet": an address on the router, outside every pool.
    lab.router.ip("addr", "add", `${OUTSIDE}/32`, "dev", "lo");
  }, HOOK_MS);

  afterAll(async () => {
    pinger?.kill("SIGKILL");
    await destroyLab(lab);
  });

  it("Never -> CrossSubnet -> Always -> CrossSubnet -> Never: routes follow, pods keep their addresses, at most one echo lost per change", async () => {
    const block = blockOf(b.pod4 as string);
    const form = () => {
      const r201 = routesOf(a.ns, "201").find((r) => r.dst === block);
      const r202 = routesOf(a.ns, "202").find((r) => r.dst === block);
      if (r202?.dev === "vxlan.ocelot" && r202.flags?.includes("onlink")) return "tunnel";
      if (r202?.gateway === b.ip4) return "native-agent";
      if (r201?.gateway === b.ip4) return "native-bgp";
      return "none";
    };
    const reach = async (want: string, what: string) =>
      waitFor(`${what}: ${a.name}'s route to ${block} ${want}`, () => form() === want).catch(
        (e) => {
          throw new Error(`${(e as Error).message} (is ${form()})\n${logs()}`);
        },
      );
    await reach("native-bgp", "Never (BGP)");
    const before = (a.pod as Netns).ipJson<{ addr_info: { local: string }[] }[]>(
      "addr",
      "show",
      "eth0",
    );
    // The continuous ping: 2 a second, its summary on SIGINT.
    pinger = spawn(
      "ip",
      [
        "netns",
        "exec",
        (a.pod as Netns).name,
        "ping",
        "-n",
        "-i",
        "0.5",
        "-w",
        String(HANG_MS / 1000),
        b.pod4 as string,
      ],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    pinger.stdout?.on("data", (d) => (out += d));
    const exited = new Promise<void>((resolve) => pinger?.once("exit", () => resolve()));
    const hold = () => new Promise((r) => setTimeout(r, 1500));
    await hold();
    const steps: [string, string][] = [
      ["CrossSubnet", "native-agent"],
      ["Always", "tunnel"],
      ["CrossSubnet", "native-agent"],
      ["Never", "native-bgp"],
    ];
    const changedAt: string[] = [];
    for (const [mode, want] of steps) {
      changedAt.push(`${mode} at ${(Date.now() / 1000).toFixed(3)}`);
      await setPools(lab.store, { vxlanMode: mode, natOutgoing: true }, [4]);
      await reach(want, mode);
      await hold();
    }
    pinger.kill("SIGINT");
    await exited;
    const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
    expect(m, out).not.toBeNull();
    const [sent, got] = [Number(m?.[1]), Number(m?.[2])];
    // Which echoes went unanswered, and when the modes changed (for a failure's message).
    const answered = new Set([...out.matchAll(/icmp_seq=(\d+)/g)].map((x) => Number(x[1])));
    const lost = [...Array(sent).keys()].map((i) => i + 1).filter((i) => !answered.has(i));
    const first = /^\[(\d+\.\d+)\]/m.exec(out)?.[1];
    const why = `lost icmp_seq ${lost.join(",")} (first reply at ${first}, 0.5 s apart); ${changedAt.join("; ")}`;
    console.log(`mode changes: ${sent} echoes sent, ${got} answered (${steps.length} changes)`);
    expect(sent).toBeGreaterThan(10);
    expect(sent - got, why).toBeLessThanOrEqual(steps.length);
    const after = (a.pod as Netns).ipJson<{ addr_info: { local: string }[] }[]>(
      "addr",
      "show",
      "eth0",
    );
    expect(after[0]?.addr_info.map((x) => x.local)).toEqual(
      before[0]?.addr_info.map((x) => x.local),
    );
  });

  it("Always: the node's own traffic reaches the remote pod through the tunnel, NAT-outgoing masquerades to the node's address, a policy denying ingress holds over the tunnel", async () => {
    await setPools(lab.store, { vxlanMode: "Always", natOutgoing: true }, [4]);
    const block = blockOf(b.pod4 as string);
    await waitFor("the tunnel route", () =>
      routesOf(a.ns, "202").some((r) => r.dst === block && r.dev === "vxlan.ocelot"),
    );
    await waitPing(a.ns, b.pod4 as string, "the node's own ping to the remote pod", logs);
    expect(await seenSource(a.pod as Netns, b.pod as Netns, b.pod4 as string)).toBe(a.pod4);
    expect(await seenSource(a.pod as Netns, lab.router, OUTSIDE)).toBe(a.ip4);
    // A GlobalNetworkPolicy denying ICMP into the pods: the echo over the tunnel stops; gone, it works again.
    const key = "/ocelot/resources/v3/globalnetworkpolicies/deny-icmp";
    await lab.store.update(
      key,
      JSON.stringify({
        apiVersion: "projectcalico.org/v3",
        kind: "GlobalNetworkPolicy",
        metadata: { name: "deny-icmp" },
        spec: {
          selector: "all()",
          types: ["Ingress"],
          ingress: [{ action: "Deny", protocol: "ICMP" }, { action: "Allow" }],
        },
      }),
    );
    await waitFor(
      "the policy to stop the ping over the tunnel",
      () => !ping(a.pod as Netns, b.pod4 as string).ok,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${logs()}`);
    });
    await lab.store.delete(key);
    await waitFor(
      "the ping back without the policy",
      () => ping(a.pod as Netns, b.pod4 as string).ok,
    );
  });
});
