// FelixConfiguration's verdicts with real traffic, applied by the agent (renderDataplane +
// applyDataplane) in a node namespace with pods A and B and an outside host, the node's FORWARD
// chain at policy DROP with the host's own rules after Ocelot's hook (as Docker leaves a host):
// ESTABLISHED,RELATED and TCP 8080 accepted, nothing else; and a mangle PREROUTING rule of the
// host's that drops TCP 9000. TCP servers in B and in the node count what they accept, so every
// connect is counted on both sides (the client's ok / refused / timeout, the server's count):
// - iptablesFilterAllowAction Accept (Felix's default): B's policy allows 8080 and 8082 from A,
//   both connect (Ocelot accepts before the host's FORWARD rules); 8081 is denied: a timeout;
// - Return: 8080 still connects (the host's rule accepts it), 8082 no longer does (the host's
//   chain policy decides: DROP);
// - iptablesFilterDenyAction Reject: 8081 is refused at once (ICMP port unreachable), not timed out;
// - iptablesMangleAllowAction: a preDNAT policy on the node's host endpoint allows TCP 9000 from
//   the outside host: with Accept the host's later mangle rule is skipped and it connects, with
//   Return that rule drops it;
// the chains read back as Felix renders them, and a second apply changes nothing.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RuleActions } from "../../src/felix/actions.js";
import { applyDataplane } from "../../src/felix/apply.js";
import { renderDataplane } from "../../src/felix/dataplane.js";
import {
  DEFAULT_ALLOW_PROFILE,
  fromGlobalNetworkPolicy,
  type Policy,
} from "../../src/felix/policy.js";
import { KernelFib } from "../../src/fib/kernel_fib.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  addPod,
  closePodLab,
  linkOutside,
  policyEndpointsOf,
  workloadsOf,
} from "../helpers/pods.js";

const reason = netnsUnavailableReason() ?? addonUnavailableReason();
const skip = skipWithReason("FelixConfiguration allow/deny actions (netns)", reason);

const PODS = {
  a: { iface: "oclacaaaaaaaaa", v4: "10.66.0.2" },
  b: { iface: "oclacbbbbbbbbb", v4: "10.66.0.3" },
};
const NODE = "192.0.2.1";
const OUTSIDE = "192.0.2.10";

/** Counts the connections it accepts per port into a JSON file. */
const SERVER = `
const net = require("node:net");
const fs = require("node:fs");
const [file, ...ports] = process.argv.slice(1);
const counts = {};
// Written whole, then renamed: a reader never sees half a file.
const save = () => {
  fs.writeFileSync(file + ".tmp", JSON.stringify(counts));
  fs.renameSync(file + ".tmp", file);
};
for (const p of ports) {
  counts[p] = 0;
  net.createServer((s) => {
    counts[p]++;
    save();
    s.end();
  }).listen(Number(p), "0.0.0.0");
}
save();
`;

const gnp = (name: string, spec: Record<string, unknown>): Policy =>
  fromGlobalNetworkPolicy({ metadata: { name }, spec: spec as never });

/** B takes TCP 8080 and 8082 from A and denies 8081 (explicitly). */
const B_POLICY = gnp("b-ingress", {
  selector: "app == 'b'",
  types: ["Ingress"],
  ingress: [
    { action: "Deny", protocol: "TCP", destination: { ports: [8081] } },
    { action: "Allow", protocol: "TCP", source: { selector: "app == 'a'" } },
  ],
});
/** preDNAT: the node's host endpoint takes TCP 9000 from anywhere. */
const PRE_DNAT = {
  ...gnp("pre-dnat-9000", {
    selector: "role == 'node'",
    types: ["Ingress"],
    ingress: [{ action: "Allow", protocol: "TCP", destination: { ports: [9000] } }],
  }),
  preDNAT: true,
  applyOnForward: true,
  hostOnly: true,
};

type Outcome = "ok" | "refused" | "timeout";

/** One TCP connect (2 s limit) from ns: ok, refused (RST or ICMP error) or timeout. */
function connect(from: Netns, ip: string, port: number): Outcome {
  const r = runSync(
    "ip",
    ["netns", "exec", from.name, "timeout", "2", "bash", "-c", `exec 3<>/dev/tcp/${ip}/${port}`],
    { timeout: HANG_MS },
  );
  return r.status === 0 ? "ok" : r.status === 124 ? "timeout" : "refused";
}

describe.skipIf(skip)(
  "FelixConfiguration iptablesFilterAllowAction / DenyAction / MangleAllowAction",
  () => {
    let node: Netns;
    let outside: Netns;
    const pods: Record<"a" | "b", Netns> = {} as never;
    let fib: KernelFib;
    const children: ChildProcess[] = [];
    const dir = mkdtempSync(join(tmpdir(), "ocelot-actions-"));
    const counts = (who: "b" | "node") =>
      JSON.parse(readFileSync(join(dir, `${who}.json`), "utf8")) as Record<string, number>;

    const apply = (actions?: RuleActions) =>
      applyDataplane(
        renderDataplane({
          workloads: workloadsOf(PODS),
          pools: [{ cidr: "10.66.0.0/16", natOutgoing: false }],
          policy: {
            endpoints: [
              ...policyEndpointsOf(PODS),
              { id: "host/node", namespace: "", labels: { role: "node" }, addresses: [NODE] },
            ],
            policies: [B_POLICY, PRE_DNAT],
          },
          host: {
            hostEndpoints: [
              {
                name: "node-ext0",
                interfaceName: "ext0",
                labels: { role: "node" },
                profiles: [DEFAULT_ALLOW_PROFILE.name],
              },
            ],
          },
          ...(actions !== undefined ? { actions } : {}),
        }),
        { netns: node.name, fib },
      );

    /**
     * Each port's outcome from `from`, and how many connections the server accepted for it (the
     * server writes its count after the client returns: waited for when the client connected).
     */
    async function probe(from: Netns, ip: string, who: "b" | "node", ports: number[]) {
      const out: Record<number, { client: Outcome; server: number }> = {};
      for (const port of ports) {
        const before = counts(who)[port] ?? 0;
        const client = connect(from, ip, port);
        if (client === "ok")
          await waitFor(`${who}'s count of port ${port}`, () =>
            (counts(who)[port] ?? 0) > before ? true : undefined,
          );
        out[port] = { client, server: (counts(who)[port] ?? 0) - before };
      }
      return out;
    }

    beforeAll(async () => {
      node = Netns.create("acn");
      outside = Netns.create("aco");
      linkOutside(node, outside, { node4: NODE, outside4: OUTSIDE });
      for (const app of ["a", "b"] as const)
        pods[app] = addPod(node, `ac${app}`, PODS[app].iface, PODS[app].v4);
      // The host's own rules (as Docker leaves FORWARD): after Ocelot's hook, which goes first.
      node.exec("iptables-nft", "-P", "FORWARD", "DROP");
      node.exec(
        "iptables-nft",
        "-A",
        "FORWARD",
        "-m",
        "conntrack",
        "--ctstate",
        "RELATED,ESTABLISHED",
        "-j",
        "ACCEPT",
      );
      node.exec("iptables-nft", "-A", "FORWARD", "-p", "tcp", "--dport", "8080", "-j", "ACCEPT");
      node.exec(
        "iptables-nft",
        "-t",
        "mangle",
        "-A",
        "PREROUTING",
        "-p",
        "tcp",
        "--dport",
        "9000",
        "-j",
        "DROP",
      );
      for (const [ns, who, ports] of [
        [pods.b, "b", ["8080", "8081", "8082"]],
        [node, "node", ["9000"]],
      ] as const) {
        const [cmd, args] = ns.wrap(
          process.execPath,
          "-e",
          SERVER,
          join(dir, `${who}.json`),
          ...ports,
        );
        children.push(spawn(cmd, args, { stdio: "ignore" }));
      }
      await waitFor("the servers", () => {
        try {
          return counts("b")["8082"] === 0 && counts("node")["9000"] === 0 ? true : undefined;
        } catch {
          return undefined;
        }
      });
      fib = await KernelFib.open({ netns: node.name, protocols: [202], watch: false });
    }, HANG_MS);

    afterAll(async () => {
      await closePodLab(children, fib, pods, outside, node);
      rmSync(dir, { recursive: true, force: true });
    });

    it("Accept and Drop (Felix's defaults): allowed ports connect past the host's FORWARD policy, 8081 times out", async () => {
      await apply();
      const filter = node.exec("iptables-nft-save", "-t", "filter");
      expect(filter).toContain(`-A ocl-FORWARD -o ocl+ -j ACCEPT`);
      expect(filter).toMatch(/-A ocl-tw-\S+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT/);
      const r = await probe(pods.a, PODS.b.v4, "b", [8080, 8081, 8082]);
      console.log(`Accept/Drop: ${JSON.stringify(r)}`);
      expect(r).toEqual({
        8080: { client: "ok", server: 1 },
        8081: { client: "timeout", server: 0 },
        8082: { client: "ok", server: 1 },
      });
    });

    it("iptablesFilterAllowAction Return: the host's rules decide (8080 by its rule, 8082 by its DROP policy); Reject refuses 8081", async () => {
      await apply({ filterAllow: "Return", mangleAllow: "Accept", filterDeny: "Reject" });
      const filter = node.exec("iptables-nft-save", "-t", "filter");
      expect(filter).toContain(`-A ocl-FORWARD -o ocl+ -j RETURN`);
      expect(filter).not.toContain(`-A ocl-FORWARD -o ocl+ -j ACCEPT`);
      expect(filter).toMatch(
        /-A ocl-tw-\S+ -m conntrack --ctstate RELATED,ESTABLISHED -j MARK --set-xmark 0x10000\/0x10000/,
      );
      expect(filter).toMatch(/-A ocl-tw-\S+ -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN/);
      expect(filter).toMatch(
        /-A ocl-pi-\S+ -p tcp -m multiport --dports 8081 -j REJECT --reject-with icmp-port-unreachable/,
      );
      expect(
        (await apply({ filterAllow: "Return", mangleAllow: "Accept", filterDeny: "Reject" }))
          .changes,
      ).toEqual([]);
      const r = await probe(pods.a, PODS.b.v4, "b", [8080, 8081, 8082]);
      console.log(`Return/Reject: ${JSON.stringify(r)}`);
      expect(r).toEqual({
        8080: { client: "ok", server: 1 },
        8081: { client: "refused", server: 0 },
        8082: { client: "timeout", server: 0 },
      });
    });

    it("iptablesMangleAllowAction: preDNAT-allowed TCP 9000 skips the host's mangle DROP with Accept, meets it with Return", async () => {
      await apply({ filterAllow: "Accept", mangleAllow: "Accept", filterDeny: "Drop" });
      expect(node.exec("iptables-nft-save", "-t", "mangle")).toContain(
        "-A ocl-PREROUTING -m mark --mark 0x10000/0x10000 -j ACCEPT",
      );
      const accept = await probe(outside, NODE, "node", [9000]);
      await apply({ filterAllow: "Accept", mangleAllow: "Return", filterDeny: "Drop" });
      const mangle = node.exec("iptables-nft-save", "-t", "mangle");
      expect(mangle).toContain("-A ocl-PREROUTING -m mark --mark 0x10000/0x10000 -j RETURN");
      expect(mangle).not.toContain("-A ocl-PREROUTING -m mark --mark 0x10000/0x10000 -j ACCEPT");
      const ret = await probe(outside, NODE, "node", [9000]);
      console.log(
        `mangle Accept: ${JSON.stringify(accept)}; mangle Return: ${JSON.stringify(ret)}`,
      );
      expect(accept).toEqual({ 9000: { client: "ok", server: 1 } });
      expect(ret).toEqual({ 9000: { client: "timeout", server: 0 } });
    });
  },
);
