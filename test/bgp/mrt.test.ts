// MRT TABLE_DUMP_V2 (RFC 6396) of a Loc-RIB, read back by Debian's bgpdump (a reader no one here
// wrote): IPv4 and IPv6 prefixes, this speaker's own and peers' routes, AS_SEQUENCE and AS_SET,
// communities (well-known ones named by bgpdump), MED, LOCAL_PREF, next hops; and the record
// framing of §2 and §4.3.1 checked byte by byte.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { asPathSegments, ribToMrt } from "../../src/bgp/mrt/from_rib.js";
import { mrtRecord, peerIndexTable, tableDumpV2 } from "../../src/bgp/mrt/table_dump_v2.js";
import { UpdateDump } from "../../src/bgp/mrt/update_dump.js";
import type { RoutesSnapshot, StatusSnapshot } from "../../src/bgp/status.js";
import { runSync } from "../helpers/limits.js";
import { skipWithReason } from "../helpers/netns.js";

const haveBgpdump = runSync("sh", ["-c", "command -v bgpdump"]).status === 0;
const skip = skipWithReason(
  "MRT read by bgpdump",
  haveBgpdump ? undefined : "bgpdump not installed (scripts/setup.sh installs it)",
);

const status = {
  routerId: "10.0.0.1",
  asn: 64512,
  peers: [
    { address: "10.0.0.2", asn: 64512, bgpId: "10.0.0.2" },
    { address: "fd00::3", asn: 65001 },
  ],
} as unknown as StatusSnapshot;
type Best = RoutesSnapshot["routes"][number]["best"];
const best = (peer: string, nextHop: string, asPath: string, extra: Partial<Best> = {}): Best => ({
  peer,
  nextHop,
  asPath,
  origin: "IGP",
  localPref: 100,
  med: null,
  communities: [],
  largeCommunities: [],
  ...extra,
});
const routes: RoutesSnapshot = {
  routes: [
    { prefix: "10.244.0.0/26", best: best("local", "-", ""), reason: "", multipath: [] },
    {
      prefix: "10.244.1.0/26",
      best: best("10.0.0.2", "10.0.0.2", "", { communities: ["64512:7", "65535:65281"], med: 5 }),
      reason: "",
      multipath: [],
    },
    {
      prefix: "2001:db8:1::/48",
      best: best("fd00::3", "fd00::3", "65001 65002 {1,2}", {
        origin: "incomplete",
        largeCommunities: ["65001:1:2"],
      }),
      reason: "",
      multipath: [],
    },
    { prefix: "2001:db8:ff::/64", best: best("local", "-", ""), reason: "", multipath: [] },
  ],
};

describe("MRT TABLE_DUMP_V2 encoding", () => {
  it("frames records (§2) and the peer index table (§4.3.1) byte for byte", () => {
    const rec = mrtRecord(0x01020304, 13, 1, Buffer.from([0xaa, 0xbb]));
    expect(rec.toString("hex")).toBe("01020304" + "000d" + "0001" + "00000002" + "aabb");
    const pit = peerIndexTable("10.0.0.1", "v", [
      { bgpId: "1.2.3.4", address: "fd00::3", asn: 65001 },
    ]);
    expect(pit.toString("hex")).toBe(
      "0a000001" +
        "0001" +
        "76" +
        "0001" +
        "03" +
        "01020304" +
        "fd000000000000000000000000000003" +
        "0000fde9",
    );
  });

  it("reads AS paths with sets", () => {
    expect(asPathSegments("65001 65002 {1,2} 7")).toEqual([
      { type: 2, asns: [65001, 65002] },
      { type: 1, asns: [1, 2] },
      { type: 2, asns: [7] },
    ]);
    expect(asPathSegments("")).toEqual([]);
  });
});

describe.skipIf(skip)("MRT TABLE_DUMP_V2 read by bgpdump -m", () => {
  it("bgpdump's lines equal our routes, IPv4 and IPv6, attributes included", () => {
    const dir = mkdtempSync(join(tmpdir(), "ocelot-mrt-"));
    try {
      const file = join(dir, "rib.mrt");
      const m = ribToMrt(status, routes, 1700000000);
      // The peer's BGP ID from its OPEN (Established), 0.0.0.0 for one that is not.
      expect(m.peers.map((p) => p.bgpId)).toEqual(["10.0.0.1", "10.0.0.2", "0.0.0.0"]);
      writeFileSync(file, tableDumpV2(1700000000, "10.0.0.1", "ocelot", m.peers, m.routes));
      const r = runSync("bgpdump", ["-m", file]);
      expect(r.status).toBe(0);
      expect(r.stdout.trim().split("\n")).toEqual([
        "TABLE_DUMP2|1700000000|B|0.0.0.0|64512|10.244.0.0/26||IGP|0.0.0.0|100|0||NAG||",
        "TABLE_DUMP2|1700000000|B|10.0.0.2|64512|10.244.1.0/26||IGP|10.0.0.2|100|5|64512:7 no-export|NAG||",
        "TABLE_DUMP2|1700000000|B|fd00::3|65001|2001:db8:1::/48|65001 65002 {1,2}|INCOMPLETE|fd00::3|100|0||NAG||",
        "TABLE_DUMP2|1700000000|B|0.0.0.0|64512|2001:db8:ff::/64||IGP|::|100|0||NAG||",
      ]);
      // The verbose form shows the large community too.
      expect(runSync("bgpdump", [file]).stdout).toMatch(/LARGE_COMMUNITY: 65001:1:2/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(skip)("MRT BGP4MP dumps of received UPDATEs, rotated", () => {
  it("rotates by size and by time, and bgpdump reads every file's records", () => {
    const dir = mkdtempSync(join(tmpdir(), "ocelot-mrt-"));
    try {
      let now = 1_700_000_000_000;
      const dump = new UpdateDump({ dir, rotateBytes: 200, rotateMs: 60_000, now: () => now });
      // An UPDATE announcing 10.1.0.0/16 with ORIGIN IGP, AS_PATH 65001 (4-octet), NEXT_HOP.
      const attrs = Buffer.from([
        ...[0x40, 1, 1, 0],
        ...[0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9],
        ...[0x40, 3, 4, 10, 0, 0, 2],
      ]);
      const body = Buffer.concat([
        Buffer.from([0, 0, 0, attrs.length]),
        attrs,
        Buffer.from([16, 10, 1]),
      ]);
      const head = Buffer.alloc(19, 0xff);
      head.writeUInt16BE(19 + body.length, 16);
      head[18] = 2;
      const update = Buffer.concat([head, body]);
      const peer = {
        peerAs: 65001,
        localAs: 64512,
        peerAddress: "10.0.0.2",
        localAddress: "10.0.0.1",
      };
      for (let i = 0; i < 4; i++) dump.write(peer, update, true); // 4 x 95 B: a new file after 2
      now += 61_000;
      dump.write(peer, update, true); // the time is up: a new file
      expect(dump.files).toHaveLength(3);
      expect(dump.records).toBe(5);
      // bgpdump reads one file at a time.
      const lines = dump.files.flatMap((f) => {
        const r = runSync("bgpdump", ["-m", f]);
        expect(r.status).toBe(0);
        return r.stdout.trim().split("\n");
      });
      expect(lines).toHaveLength(5);
      expect(lines[0]).toBe(
        "BGP4MP|1700000000|A|10.0.0.2|65001|10.1.0.0/16|65001|IGP|10.0.0.2|0|0||NAG||",
      );
      expect(lines[4]).toMatch(/^BGP4MP\|1700000061\|A\|10\.0\.0\.2\|65001\|10\.1\.0\.0\/16\|/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
