// BGP passwords never leak (issue 17, security): the real `ocelot bgpd` (log level debug,
// `--metrics-address` on its namespace's loopback) with two TCP-MD5 peers in BIRD 2: one keyed
// from a passwordFile (the session comes up), one with an inline password BIRD does not share (it
// never comes up: the kernel drops BIRD's segments). Then SIGHUPs with bad configs that carry the
// secret (a password one byte too long, a password beside a passwordFile, a password of the
// wrong type), each refused while the old config keeps running, and the good one again.
// Everything bgpd printed and served meanwhile (its log, /metrics, /readyz, /livez, `ocelot
// status` as text and JSON, `ocelot routes`, and their errors) is searched for every password,
// plain, percent-encoded and base64: none is ever there.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { httpGetIn } from "../helpers/metrics.js";
import { type Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  closePeerLab,
  type OcelotPeer,
  openPeerPair,
  type PeerLab,
  peersUnavailableReason,
  REPO_ROOT,
  tcpMd5Counters,
} from "../helpers/peers.js";

const skip = skipWithReason(
  "BGP passwords never leak",
  netnsUnavailableReason() ?? peersUnavailableReason(["bird"]),
);
const FILE_KEY = "File-Key 7731 with spaces&symbols";
const INLINE_KEY = "Inline-Key/5519!";
const BIRD_OTHER = "Bird-Other-Key#2208";
const SECRETS = [FILE_KEY, INLINE_KEY, BIRD_OTHER];
const forms = (s: string) => [s, encodeURIComponent(s), Buffer.from(s).toString("base64")];

const birdConf = `
log "@DIR@/bird.log" all;
router id 10.255.15.2;
protocol device { }
protocol static s4 { ipv4; route 10.99.15.0/24 blackhole; }
protocol bgp oc4 {
  local 10.255.15.2 as 65015; neighbor 10.255.15.1 as 64512; passive on;
  password "${FILE_KEY}";
  hold time 3; error wait time 1, 2;
  ipv4 { import all; export where source = RTS_STATIC; };
}
protocol bgp bad {
  local 10.255.15.3 as 65015; neighbor 10.255.15.4 as 64512;
  password "${BIRD_OTHER}";
  hold time 3; connect delay time 1; connect retry time 1; error wait time 1, 2;
  ipv4 { import all; export where source = RTS_STATIC; };
}`;

describe.skipIf(skip)("BGP passwords in everything bgpd prints and serves", () => {
  let lab: PeerLab;
  let oc: Netns;
  let br: Netns;
  let bgpd: OcelotPeer;
  let keyFile: string;
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  /** Everything read from bgpd, by where it came from. */
  const outputs: [string, string][] = [];

  const config = (bad: Record<string, unknown> = { password: INLINE_KEY }) => ({
    asn: 64512,
    routerId: "10.255.15.1",
    listen: { address: "::", port: 179 },
    peers: [
      {
        address: "10.255.15.2",
        asn: 65015,
        holdTime: 3,
        connectRetryTime: 1,
        families: ["ipv4-unicast"],
        passwordFile: keyFile,
      },
      {
        address: "10.255.15.3",
        asn: 65015,
        holdTime: 3,
        passive: true,
        families: ["ipv4-unicast"],
        ...bad,
      },
    ],
    originate: [{ prefix: "10.244.15.0/26" }],
    fib: { enabled: true, table: "main", protocol: 201 },
  });
  const cli = (...args: string[]) => {
    const r = runSync(process.execPath, [join(REPO_ROOT, "bin/ocelot"), ...args], {
      timeout: HANG_MS,
    });
    return `${r.stdout}${r.stderr}`;
  };
  /** Reads every output bgpd offers now. */
  const collect = (when: string) => {
    for (const path of ["/metrics", "/readyz", "/livez"])
      outputs.push([`${when} ${path}`, httpGetIn(oc, port, path).join(" ")]);
    outputs.push([`${when} ocelot status`, cli("status", "--socket", bgpd.socket)]);
    outputs.push([
      `${when} ocelot status --json`,
      cli("status", "--json", "--socket", bgpd.socket),
    ]);
    outputs.push([
      `${when} ocelot routes --json`,
      cli("routes", "--json", "--socket", bgpd.socket),
    ]);
  };

  beforeAll(() => {
    ({ lab, oc, br } = openPeerPair("bso", "bsb", "10.255.15.1/29", "10.255.15.2/29", {
      br: "10.255.15.3/29",
      oc: "10.255.15.4/29",
    }));
    keyFile = join(lab.subdir("keys"), "bgp.key");
    writeFileSync(keyFile, `${FILE_KEY}\n`, { mode: 0o600 });
    lab.startBird(br, "bird", birdConf);
    bgpd = lab.startOcelot(oc, "ocelot", config(), ["--metrics-address", `127.0.0.1:${port}`]);
  });

  afterAll(() => {
    closePeerLab(lab, oc, br);
  });

  it("keyed sessions run: one Established, one refused by the kernel's MD5 check", async () => {
    await bgpd.established("10.255.15.2", HANG_MS);
    await waitFor("MD5 failures counted", () => tcpMd5Counters(oc).failure > 0, HANG_MS, 200);
    expect(bgpd.peer("10.255.15.3")?.state).not.toBe("Established");
    collect("running");
  });

  it("bad configs with the secrets in them are refused on SIGHUP, the old one kept", async () => {
    const bad: Record<string, unknown>[] = [
      { password: `${INLINE_KEY}${"x".repeat(80)}` },
      { password: INLINE_KEY, passwordFile: keyFile },
      { password: { key: INLINE_KEY } },
    ];
    for (const b of bad) {
      const before = (bgpd.log().match(/Configuration reload failed/g) ?? []).length;
      writeFileSync(
        bgpd.configPath,
        `${JSON.stringify({ status: { socket: bgpd.socket }, ...config(b) })}\n`,
      );
      lab.signal(bgpd.pid, "SIGHUP");
      await waitFor(
        "the reload refused",
        () => (bgpd.log().match(/Configuration reload failed/g) ?? []).length > before,
        HANG_MS,
        50,
      );
      expect(bgpd.peer("10.255.15.2")?.state).toBe("Established");
      collect(`after bad config ${JSON.stringify(Object.keys(b))}`);
    }
    writeFileSync(
      bgpd.configPath,
      `${JSON.stringify({ status: { socket: bgpd.socket }, ...config() })}\n`,
    );
    lab.signal(bgpd.pid, "SIGHUP");
    await waitFor(
      "the good config applied",
      () => bgpd.log().includes("Configuration reloaded"),
      HANG_MS,
      50,
    );
    collect("after the good config");
  });

  it("no password appears anywhere, in any encoding", () => {
    outputs.push(["bgpd's log (debug)", bgpd.log()]);
    // The refusals really were read (so the search covered them).
    expect(bgpd.log()).toContain("peers[1].password");
    let bytes = 0;
    for (const [where, text] of outputs) {
      bytes += text.length;
      for (const secret of SECRETS)
        for (const form of forms(secret))
          expect(text, `${where} shows a password`).not.toContain(form);
    }
    console.log(
      `bgp secrets: ${outputs.length} outputs searched (${bytes} bytes), no password in any`,
    );
  });
});
