// The node's CalicoNodeStatus, pure parts: the status built from the speaker's snapshot (classes
// honoured, peers by family with Calico's types, routes by source), the write rule (on change at
// most every gap, and every period), and staleness as `ocelot get` shows it.
import { describe, expect, it } from "vitest";
import {
  type CalicoNodeStatus,
  freshnessText,
  staleSince,
} from "../../src/api/caliconodestatus.js";
import { validateResource } from "../../src/api/registry.js";
import type { StatusSnapshot } from "../../src/bgp/status.js";
import { buildNodeStatus, shouldWrite } from "../../src/node/calico_node_status.js";

const peer = (address: string, state: string, uptimeSeconds: number | null) =>
  ({ address, state, uptimeSeconds }) as StatusSnapshot["peers"][number];

const input = {
  status: {
    routerId: "10.0.0.1",
    peers: [
      peer("10.0.0.2", "Established", 60),
      peer("192.0.2.1", "Active", null),
      peer("fd00::2", "Established", 5),
    ],
  } as StatusSnapshot,
  routes: {
    routes: [
      { prefix: "10.244.0.0/26", best: { peer: "local", nextHop: "-" } },
      { prefix: "10.244.1.0/26", best: { peer: "10.0.0.2", nextHop: "10.0.0.2" } },
      { prefix: "198.51.100.0/24", best: { peer: "192.0.2.1", nextHop: "192.0.2.1" } },
    ],
  } as never,
  peerKinds: {
    "10.0.0.2": { type: "NodeMesh" as const, source: "n2" },
    "192.0.2.1": { type: "GlobalPeer" as const, source: "tor" },
    "fd00::2": { type: "NodeMesh" as const, source: "n2" },
  },
  ready: true,
  bootTime: "2026-12-06T10:00:00.000Z",
};

describe("buildNodeStatus()", () => {
  const now = Date.parse("2026-12-06T12:00:00Z");
  it("counts sessions per family, types peers as Calico does and sources routes", () => {
    const s = buildNodeStatus(input, ["Agent", "BGP", "Routes"], now);
    expect(s.agent?.birdV4).toEqual({
      state: "Ready",
      version: "ocelot 0.1.0",
      routerID: "10.0.0.1",
      lastBootTime: "2026-12-06T10:00:00.000Z",
    });
    expect(s.bgp).toEqual({
      numberEstablishedV4: 1,
      numberNotEstablishedV4: 1,
      numberEstablishedV6: 1,
      numberNotEstablishedV6: 0,
      peersV4: [
        {
          peerIP: "10.0.0.2",
          type: "NodeMesh",
          state: "Established",
          since: "2026-12-06T11:59:00.000Z",
        },
        { peerIP: "192.0.2.1", type: "GlobalPeer", state: "Active" },
      ],
      peersV6: [
        {
          peerIP: "fd00::2",
          type: "NodeMesh",
          state: "Established",
          since: "2026-12-06T11:59:55.000Z",
        },
      ],
    });
    expect(s.routes?.routesV4).toEqual([
      { type: "RIB", destination: "10.244.0.0/26", learnedFrom: { sourceType: "Static" } },
      {
        type: "FIB",
        destination: "10.244.1.0/26",
        gateway: "10.0.0.2",
        learnedFrom: { sourceType: "NodeMesh", peerIP: "10.0.0.2" },
      },
      {
        type: "FIB",
        destination: "198.51.100.0/24",
        gateway: "192.0.2.1",
        learnedFrom: { sourceType: "BGPPeer", peerIP: "192.0.2.1" },
      },
    ]);
    // What it builds is a valid CalicoNodeStatus.
    expect(() =>
      validateResource({
        apiVersion: "projectcalico.org/v3",
        kind: "CalicoNodeStatus",
        metadata: { name: "n1" },
        spec: { node: "n1", classes: ["Agent", "BGP", "Routes"], updatePeriodSeconds: 10 },
        status: { lastUpdated: new Date(now).toISOString(), ...s },
      }),
    ).not.toThrow();
  });

  it("fills only the classes the spec asks for", () => {
    expect(Object.keys(buildNodeStatus(input, ["BGP"], now))).toEqual(["bgp"]);
  });
});

describe("shouldWrite()", () => {
  it("writes the first time, on a change once the gap passed, and every period", () => {
    const w = (changed: boolean, lastWriteMs: number | undefined, nowMs: number) =>
      shouldWrite({ changed, lastWriteMs, nowMs }, 10_000, 2000);
    expect(w(false, undefined, 0)).toBe(true);
    expect(w(true, 1000, 2500)).toBe(false);
    expect(w(true, 1000, 3000)).toBe(true);
    expect(w(false, 1000, 10_999)).toBe(false);
    expect(w(false, 1000, 11_000)).toBe(true);
    expect(shouldWrite({ changed: false, lastWriteMs: 0, nowMs: 1e9 }, 0, 2000)).toBe(false);
  });
});

describe("staleness", () => {
  const cns = (lastUpdated: string | undefined, updatePeriodSeconds = 10) =>
    ({
      spec: { node: "n1", updatePeriodSeconds },
      status: lastUpdated ? { lastUpdated } : undefined,
    }) as CalicoNodeStatus;
  const now = Date.parse("2026-12-06T12:00:00Z");
  it("is stale after three periods without a write, and says when it last wrote", () => {
    expect(staleSince(cns("2026-12-06T11:59:31Z"), now)).toBeUndefined();
    expect(staleSince(cns("2026-12-06T11:59:29Z"), now)).toBe("2026-12-06T11:59:29Z");
    expect(freshnessText(cns("2026-12-06T11:59:29Z"), now)).toBe(
      "STALE: last wrote 2026-12-06T11:59:29Z (31s ago)",
    );
    expect(freshnessText(cns("2026-12-06T11:59:55Z"), now)).toBe("ok (5s ago)");
    expect(freshnessText(cns(undefined), now)).toBe("never written");
    // A period of 0 (refresh off) never goes stale.
    expect(staleSince(cns("2026-12-01T00:00:00Z", 0), now)).toBeUndefined();
  });
});
