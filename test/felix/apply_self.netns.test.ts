// The agent run inside the namespace itself (no netns option): sysctls written through
// /proc/sys, commands spawned directly. Read back from outside with sysctl and iptables-save.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSync } from "../helpers/limits.js";
import { Netns, netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";

const skip = skipWithReason("felix apply in its own namespace (netns)", netnsUnavailableReason());
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

const SCRIPT = `
import { applyDataplane } from ${JSON.stringify(join(ROOT, "src/felix/apply.ts"))};
import { renderDataplane } from ${JSON.stringify(join(ROOT, "src/felix/dataplane.ts"))};
import { MemoryFib } from ${JSON.stringify(join(ROOT, "src/fib/memory_fib.ts"))};
import { runSync } from "../helpers/limits.js";
const state = renderDataplane({
  workloads: [{ id: "w", hostIface: "oclself", ipv4: ["10.244.9.2"], ipv6: [] }],
  pools: [{ cidr: "10.244.0.0/16", natOutgoing: true }],
  nodeAddresses: ["10.255.0.11"],
  options: { ipv6: false },
});
const fib = new MemoryFib([202]);
const first = await applyDataplane(state, { fib });
const second = await applyDataplane(state, { fib });
console.log(JSON.stringify({ first: first.changes, second: second.changes }));
`;

describe.skipIf(skip)("applyDataplane() inside the namespace", () => {
  let ns: Netns;
  let dir: string;

  beforeAll(() => {
    ns = Netns.create("fxself");
    ns.exec("sysctl", "-qw", "net.ipv4.ip_forward=0");
    ns.ip("link", "add", "oclself", "type", "veth", "peer", "name", "oclpeer");
    dir = mkdtempSync(join(tmpdir(), "ocelot-felix-"));
  });

  afterAll(() => {
    ns?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("writes /proc/sys and the tables, and a second apply changes nothing", () => {
    const file = join(dir, "agent.mts"); // ESM outside our package
    writeFileSync(file, SCRIPT);
    const r = runSync("ip", ["netns", "exec", ns.name, process.execPath, "--import", "tsx", file], {
      cwd: ROOT,
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { first: string[]; second: string[] };
    expect(out.first).toContain("sysctl net.ipv4.ip_forward=1 (was 0)");
    expect(out.first).toContain("sysctl net.ipv4.conf.oclself.proxy_arp=1 (was 0)");
    expect(out.second).toEqual([]);
    expect(ns.exec("sysctl", "-n", "net.ipv4.ip_forward").trim()).toBe("1");
    expect(ns.exec("sysctl", "-n", "net.ipv4.conf.oclself.proxy_arp").trim()).toBe("1");
    expect(ns.ipJson<{ address: string }[]>("link", "show", "dev", "oclself")[0].address).toBe(
      "ee:ee:ee:ee:ee:ee",
    );
    expect(ns.exec("iptables-nft-save", "-t", "nat")).toContain(
      "-A ocl-nat-outgoing -m set --match-set ocl-masq-ipam-pools src -m set ! --match-set ocl-all-ipam-pools dst -j MASQUERADE",
    );
  });
});
