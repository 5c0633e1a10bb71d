// BFD interop with FRR's bfdd in network namespaces, `ocelot bgpd` running as a real process with
// per-peer `bfd`: IPv4 and IPv6 single hop and IPv4 multihop (RFC 5883) reach Up on both sides
// (read from `vtysh show bfd peers json`, `ocelot status` and /metrics); FRR's IPv4 or IPv6
// packets dropped with ip(6)tables inside its namespace take our side Down with diag
// ControlDetectionTimeExpired within interval × multiplier (printed), and Up again once they
// flow; packets with a TTL other than 255 never reach a session (RFC 5881 §5).
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { httpGetIn, metricSample } from "../helpers/metrics.js";
import { link, Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  type FrrPeer,
  frrBfdConf,
  type OcelotPeer,
  PeerLab,
  peersUnavailableReason,
} from "../helpers/peers.js";

const reason =
  netnsUnavailableReason() ??
  peersUnavailableReason(["frr"]) ??
  (existsSync("/usr/lib/frr/bfdd") ? undefined : "/usr/lib/frr/bfdd not installed");
const skip = skipWithReason("BFD interop with FRR bfdd", reason);

const OC4 = "10.255.14.1";
const FR4 = "10.255.14.2";
const OC6 = "fd00:14::1";
const FR6 = "fd00:14::2";
/** A second address pair on the same link for an RFC 5883 multihop session. */
const OCM = "10.255.14.9";
const FRM = "10.255.14.10";

const bfddConf = frrBfdConf(
  [
    { peer: OC4, local: FR4 },
    { peer: OC6, local: FR6 },
    { peer: OCM, local: FRM, multihop: true },
  ],
  { log: true },
);

const bfd = { minTx: 300, minRx: 300, multiplier: 3 };
const ocelotConfig = {
  asn: 64514,
  routerId: OC4,
  listen: { address: "::", port: 179 },
  peers: [
    { address: FR4, asn: 65014, passive: true, families: ["ipv4-unicast"], bfd },
    { address: FR6, asn: 65014, passive: true, families: ["ipv6-unicast"], bfd },
    {
      address: FRM,
      asn: 65014,
      passive: true,
      sourceAddress: OCM,
      families: ["ipv4-unicast"],
      bfd: { ...bfd, multihop: true },
    },
  ],
  fib: { enabled: false, table: "main", protocol: 201, gracefulRestartTime: 0 },
};

interface FrrBfdPeer {
  peer: string;
  status: string;
  diagnostic?: string;
  "remote-diagnostic"?: string;
  "transmit-interval"?: number;
  "remote-transmit-interval"?: number;
}

interface OcBfd {
  peer: string;
  state: string;
  remoteState: string;
  diag: string;
  txIntervalMs: number;
  detectionTimeMs: number;
}

describe.skipIf(skip)("BFD interop with FRR bfdd", () => {
  let lab: PeerLab;
  let oc: Netns;
  let fr: Netns;
  let frr: FrrPeer;
  let ocelot: OcelotPeer;

  beforeAll(() => {
    lab = new PeerLab();
    oc = Netns.create("bfo");
    fr = Netns.create("bff");
    link(oc, "oc-fr", `${OC4}/30`, fr, "fr-oc", `${FR4}/30`);
    oc.ip("-6", "addr", "add", `${OC6}/64`, "dev", "oc-fr", "nodad");
    fr.ip("-6", "addr", "add", `${FR6}/64`, "dev", "fr-oc", "nodad");
    oc.ip("addr", "add", `${OCM}/30`, "dev", "oc-fr");
    fr.ip("addr", "add", `${FRM}/30`, "dev", "fr-oc");
    const d = lab.subdir("frr");
    frr = lab.startFrrBfd(fr, "frr", bfddConf.replace("@LOG@", `${d}/bfdd.log`));
    ocelot = lab.startOcelot(oc, "ocelot", ocelotConfig, ["--metrics-address", "127.0.0.1:9179"]);
  });

  afterAll(() => {
    if (process.env.KEEP_PEERS) console.warn(`peer files kept in ${lab?.dir}`);
    lab?.cleanup();
    oc?.destroy();
    fr?.destroy();
  });

  const frrPeer = (addr: string): FrrBfdPeer | undefined => {
    try {
      return frr.vtyshJson<FrrBfdPeer[]>("show bfd peers json").find((p) => p.peer === addr);
    } catch {
      return undefined;
    }
  };
  const ours = (addr: string): OcBfd | undefined =>
    (ocelot.status().bfd as OcBfd[] | undefined)?.find((b) => b.peer === addr);
  /** Our side's BFD state-change log lines for a peer (time `at` in ms). */
  const changes = (addr: string) =>
    ocelot
      .log()
      .split("\n")
      .filter((l) => l.includes('"msg":"BFD session'))
      .map((l) => JSON.parse(l) as { peer: string; state: string; diag: string; at: number })
      .filter((c) => c.peer === addr);

  it("IPv4 and IPv6 single-hop and IPv4 multihop sessions come Up on both sides at 300 ms × 3", async () => {
    for (const [mine, theirs] of [
      [FR4, OC4],
      [FR6, OC6],
      [FRM, OCM],
    ]) {
      await waitFor(`BFD with ${mine} Up on our side`, () => ours(mine)?.state === "Up");
      await waitFor(`BFD with ${theirs} up on FRR`, () => frrPeer(theirs)?.status === "up");
    }
    // After the Poll sequences both sides run the configured rate (each side's view settles on
    // its own schedule, so each is waited for rather than read once).
    await waitFor("300 ms in force", () => ours(FR4)?.txIntervalMs === 300);
    await waitFor("our remote Up, 900 ms detection", () => {
      const o = ours(FR4);
      return o?.remoteState === "Up" && o.detectionTimeMs === 900;
    });
    await waitFor("FRR sees our 300 ms", () => frrPeer(OC4)?.["remote-transmit-interval"] === 300);
    await waitFor("status shows both Up", () =>
      /BFD[\s\S]*10\.255\.14\.2\s+Up\s+Up/.test(ocelot.statusText()),
    );
    await waitFor("status shows the multihop session Up", () =>
      /10\.255\.14\.10\s+Up\s+Up.*multihop/.test(ocelot.statusText()),
    );
    let text = "";
    await waitFor("the BFD metrics", () => {
      const [code, body] = httpGetIn(oc, 9179, "/metrics");
      text = body;
      return (
        code === 200 &&
        metricSample(text, `ocelot_bfd_session_up{peer="${FR4}",mode="single-hop"}`) === 1 &&
        metricSample(text, `ocelot_bfd_session_up{peer="${FRM}",mode="multihop"}`) === 1
      );
    });
    expect(metricSample(text, "ocelot_bfd_packets_received_total")).toBeGreaterThan(0);
  });

  for (const [fam, mine, theirs, other, tables] of [
    ["IPv4", FR4, OC4, FR6, "iptables"],
    ["IPv6", FR6, OC6, FR4, "ip6tables"],
  ] as const) {
    it(`detects FRR's ${fam} packets dropped within interval × multiplier (diag 1), and comes Up again`, async () => {
      await waitFor("Up", () => ours(mine)?.state === "Up" && ours(other)?.state === "Up");
      const before = changes(mine).length;
      const rule = ["OUTPUT", "-p", "udp", "--dport", "3784", "-d", theirs, "-j", "DROP"];
      const t0 = Date.now();
      fr.exec(tables, "-I", ...rule);
      const t1 = Date.now();
      try {
        await waitFor("our side Down", () => ours(mine)?.state === "Down");
        const down = changes(mine)
          .slice(before)
          .find((c) => c.state === "Down");
        expect(down?.diag).toBe("ControlDetectionTimeExpired");
        const ms = (down?.at ?? 0) - t1;
        console.log(
          `BFD ${fam} detection after the cut: ${ms} ms (cut command took ${t1 - t0} ms; goal 900 + 50 ms)`,
        );
        expect(ms).toBeGreaterThan(0);
        // A hang-sized bound: the figure itself is measured in bench/bfd_detect.ts.
        expect(ms).toBeLessThan(30_000);
        // The other family's session is untouched by this rule.
        expect(ours(other)?.state).toBe("Up");
        // FRR hears our Down (diag 1) and goes down too.
        await waitFor("FRR down", () => frrPeer(theirs)?.status === "down");
      } finally {
        fr.exec(tables, "-D", ...rule);
      }
      await waitFor("Up again on our side", () => ours(mine)?.state === "Up");
      await waitFor("up again on FRR", () => frrPeer(theirs)?.status === "up");
    });
  }

  it("drops single-hop packets that arrive with a TTL below 255 (RFC 5881 §5)", async () => {
    await waitFor("Up", () => ours(FR4)?.state === "Up");
    // FRR's packets now leave with TTL 254: the kernel filter on our socket drops every one.
    fr.exec(
      "iptables",
      "-t",
      "mangle",
      "-I",
      "POSTROUTING",
      "-p",
      "udp",
      "--dport",
      "3784",
      "-j",
      "TTL",
      "--ttl-dec",
      "1",
    );
    try {
      await waitFor("our side Down on TTL 254", () => ours(FR4)?.state === "Down");
      expect(changes(FR4).at(-1)?.diag).toBe("ControlDetectionTimeExpired");
    } finally {
      fr.exec(
        "iptables",
        "-t",
        "mangle",
        "-D",
        "POSTROUTING",
        "-p",
        "udp",
        "--dport",
        "3784",
        "-j",
        "TTL",
        "--ttl-dec",
        "1",
      );
    }
    await waitFor("Up again", () => ours(FR4)?.state === "Up");
  });
});
