// The status socket: mode 0600, one JSON request per connection, errors for unknown commands,
// a stale socket file replaced, and the human tables of `ocelot status` / `ocelot routes`.
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  formatRoutes,
  formatStatus,
  queryStatus,
  type RoutesSnapshot,
  type StatusSnapshot,
  serveStatus,
} from "../../src/bgp/status.js";

const dir = mkdtempSync(join(tmpdir(), "ocelot-status-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const snapshot: StatusSnapshot = {
  routerId: "10.0.0.1",
  asn: 64512,
  listen: { address: "0.0.0.0", port: 179 },
  uptimeSeconds: 5,
  peers: [
    {
      address: "10.0.0.2",
      asn: 4200000001,
      localAsn: 64512,
      type: "external",
      state: "Established",
      uptimeSeconds: 3725,
      negotiated: null,
      prefixes: { received: 3, accepted: 2, advertised: 1 },
      messages: { in: 1, out: 1, updatesIn: 1 },
      sendQueueBytes: 0,
      establishedTransitions: 1,
      lastError: { kind: "NotificationSent", code: 4, subcode: 0, message: "Hold timer expired" },
    },
  ],
  locRib: { ipv4: 2, ipv6: 0 },
  fib: { enabled: true, installed: 2, pending: 0, errors: 0 },
  memory: { rssMiB: 1, heapUsedMiB: 1, arrayBuffersMiB: 0, ribTypedMiB: 0 },
};
const routes: RoutesSnapshot = {
  routes: [
    {
      prefix: "10.99.0.0/24",
      best: {
        peer: "10.0.0.2",
        nextHop: "10.0.0.2",
        asPath: "4200000001",
        origin: "IGP",
        localPref: null,
        med: null,
        communities: ["65001:7"],
        largeCommunities: [],
      },
      reason: "OnlyPath",
      multipath: ["10.0.0.2"],
    },
  ],
};

describe("serveStatus() / queryStatus()", () => {
  it("answers status and routes on a 0600 socket and reports unknown commands", async () => {
    const path = join(dir, "a", "bgpd.sock");
    const srv = await serveStatus(path, { status: () => snapshot, routes: () => routes });
    try {
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect(await queryStatus<StatusSnapshot>(path, "status")).toEqual(snapshot);
      expect(await queryStatus<RoutesSnapshot>(path, "routes")).toEqual(routes);
      await expect(queryStatus(path, "bogus" as "status")).rejects.toThrow(
        'Unknown command "bogus"',
      );
    } finally {
      await srv.close();
    }
  });

  it("replaces a stale socket file and refuses one in use", async () => {
    const path = join(dir, "stale.sock");
    writeFileSync(path, "");
    const srv = await serveStatus(path, { status: () => snapshot, routes: () => routes });
    try {
      await expect(
        serveStatus(path, { status: () => snapshot, routes: () => routes }),
      ).rejects.toThrow(`Status socket ${path} is in use by another daemon`);
    } finally {
      await srv.close();
    }
  });

  it("says which socket it cannot reach", async () => {
    await expect(queryStatus(join(dir, "none.sock"), "status")).rejects.toThrow(
      `Cannot reach status socket ${join(dir, "none.sock")}`,
    );
  });
});

describe("formatStatus() / formatRoutes()", () => {
  it("prints one row per peer with counts, uptime and the last error", () => {
    const text = formatStatus(snapshot);
    expect(text).toContain("BGP router 10.0.0.1, AS 64512");
    expect(text).toMatch(
      /10\.0\.0\.2\s+4200000001\s+eBGP\s+Established\s+1h02m05s\s+3\/2\/1\s+NotificationSent 4\/0 \(Hold timer expired\)/,
    );
  });

  it("heads the table with the node's addresses and how each was chosen (ocelot node run)", () => {
    expect(formatStatus(snapshot)).not.toContain("Node ");
    const text = formatStatus({
      ...snapshot,
      node: {
        name: "n1",
        ipv4Address: "10.0.0.11/24",
        ipv4Source:
          "autodetected by can-reach=10.0.0.1: the source address of the route to 10.0.0.1, on eth1",
        ipv6Source: "none",
      },
    });
    expect(text.split("\n")[0]).toBe(
      "Node n1: IPv4 10.0.0.11/24 (autodetected by can-reach=10.0.0.1: the source address of the route to 10.0.0.1, on eth1); IPv6 none",
    );
  });

  it("prints the Loc-RIB with the best-path reason", () => {
    expect(formatRoutes(routes)).toMatch(
      /10\.99\.0\.0\/24\s+10\.0\.0\.2\s+10\.0\.0\.2\s+4200000001\s+OnlyPath/,
    );
  });
});
