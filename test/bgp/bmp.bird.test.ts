// BMP (RFC 7854, RFC 8671 Adj-RIB-Out) from the real `ocelot bgpd --bmp-station` to pmacct's
// pmbmpd (a BMP collector no one here wrote) in the speaker's namespace, peered with BIRD 2:
// pmbmpd logs Initiation, Peer Up with BIRD's BGP ID and the session's ports, Route Monitoring of
// exactly the prefixes BIRD exports (AS path and communities as BIRD sent them, pre-policy
// Adj-RIB-In) and of our origination (Adj-RIB-Out), Statistics Reports whose Adj-RIB-In count is
// BIRD's export count, Peer Down with reason 3 (BIRD's Cease), a new Peer Up after a reconnect
// to a restarted station that connects after the session came up, with the dump of the routes
// BIRD sent before (RFC 7854 §5: one UPDATE, then End-of-RIB), and Termination when bgpd stops.
// The same session captured on the namespace's loopback is decoded by tshark's BMP dissector
// without a malformed frame and by Ocelot's own decoder, message for message.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, openSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BmpMessage, decodeStream } from "../../src/bgp/bmp/codec.js";
import { PmbmpdStation } from "../helpers/bmp_station.js";
import { runSync } from "../helpers/limits.js";
import { httpGetIn, metricSample } from "../helpers/metrics.js";
import { link, Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  type BirdPeer,
  type OcelotPeer,
  PeerLab,
  peersUnavailableReason,
  REPO_ROOT,
} from "../helpers/peers.js";

const have = (b: string) => runSync("sh", ["-c", `command -v ${b}`]).status === 0;
const reason =
  netnsUnavailableReason() ??
  peersUnavailableReason(["bird"]) ??
  (have("pmbmpd") ? undefined : "pmbmpd (Debian pmacct) is not installed") ??
  (have("tshark") ? undefined : "tshark is not installed");
const skip = skipWithReason("BMP to pmbmpd with BIRD", reason);

const BIRD_AS = 65020;
const OC_AS = 64512;
const PORT = 11019;
const METRICS = 9093;
const SENT = ["10.98.1.0/24", "10.98.2.0/24", "10.98.3.0/24"];
const OURS = "10.244.8.0/26";

const birdConf = `
log "@DIR@/bird.log" all;
router id 10.255.8.2;
protocol device { }
protocol static s4 { ipv4; ${SENT.map((p) => `route ${p} blackhole;`).join(" ")} }
protocol bgp oc {
  local 10.255.8.2 as ${BIRD_AS};
  neighbor 10.255.8.1 as ${OC_AS};
  hold time 6;
  connect delay time 1; connect retry time 1;
  ipv4 { import all; export filter { if source != RTS_STATIC then reject; bgp_community.add((65020, 7)); accept; }; };
}
`;

describe.skipIf(skip)("ocelot bgpd --bmp-station to pmbmpd, with BIRD 2", () => {
  let lab: PeerLab;
  let oc: Netns;
  let br: Netns;
  let ocelot: OcelotPeer;
  let bird: BirdPeer;
  let station: PmbmpdStation | undefined;
  let capture: ChildProcess | undefined;
  let pcap = "";
  let mrtDir = "";
  /** Route Monitoring messages of dumps, as the metrics counted them. */
  let dumpMessages = 0;

  /** pmbmpd in the speaker's namespace on loopback, logging every message as JSON lines. */
  const startStation = async (name: string) => {
    station = await PmbmpdStation.start(lab, oc, name, PORT);
  };
  const stopStation = () => {
    station?.stop();
    station = undefined;
  };
  const ofType = (t: string) => station?.ofType(t) ?? [];

  beforeAll(async () => {
    lab = new PeerLab();
    oc = Netns.create("bmo");
    br = Netns.create("bmb");
    link(oc, "oc-br", "10.255.8.1/30", br, "br-oc", "10.255.8.2/30");
    pcap = join(lab.dir, "bmp.pcapng");
    mrtDir = join(lab.dir, "mrt");
    const tsOut = join(lab.dir, "tshark.out");
    const [tcmd, targs] = oc.wrap("tshark", "-i", "lo", "-f", `tcp port ${PORT}`, "-w", pcap);
    capture = spawn(tcmd, targs, {
      stdio: ["ignore", openSync(tsOut, "a"), openSync(tsOut, "a")],
      detached: true,
    });
    capture.unref();
    lab.track(capture.pid as number, "tshark", `tshark@${oc.name}`);
    await waitFor(
      "tshark capturing on lo",
      () => existsSync(tsOut) && readFileSync(tsOut, "utf8").includes("Capturing on"),
      30_000,
    );
    await startStation("station1");
    ocelot = lab.startOcelot(
      oc,
      "ocelot",
      {
        asn: OC_AS,
        routerId: "10.255.8.1",
        listen: { address: "0.0.0.0", port: 179 },
        peers: [
          {
            address: "10.255.8.2",
            asn: BIRD_AS,
            holdTime: 6,
            connectRetryTime: 1,
            families: ["ipv4-unicast"],
          },
        ],
        originate: [{ prefix: OURS }],
        fib: { enabled: true, table: "main", protocol: 201 },
      },
      [
        "--bmp-station",
        `127.0.0.1:${PORT}`,
        "--bmp-stats-interval",
        "1",
        "--bmp-adj-rib-out",
        "--mrt-updates",
        mrtDir,
        "--metrics-address",
        `127.0.0.1:${METRICS}`,
      ],
    );
    bird = lab.startBird(br, "bird", birdConf);
  });

  afterAll(() => {
    stopStation();
    lab?.cleanup();
    oc?.destroy();
    br?.destroy();
  });

  it("Initiation, Peer Up with both sides' facts, Route Monitoring of what BIRD sends, stats", async () => {
    await waitFor(
      "pmbmpd logs the 3 prefixes from BIRD, ours to BIRD and a stats report counting 3",
      () => {
        const rm = ofType("route_monitor");
        const inPrefixes = new Set(rm.filter((e) => e.is_in === 1).map((e) => e.ip_prefix));
        const outPrefixes = new Set(rm.filter((e) => e.is_out === 1).map((e) => e.ip_prefix));
        const stats = ofType("stats").filter((e) => e.counter_type === 7);
        return (
          SENT.every((p) => inPrefixes.has(p)) &&
          outPrefixes.has(OURS) &&
          stats.some((e) => e.counter_value === SENT.length)
        );
      },
      20_000,
      200,
    );
    const init = ofType("init");
    expect(init).toHaveLength(1);
    expect(String(init[0]?.bmp_init_info_sysdescr)).toContain(`AS ${OC_AS} router ID 10.255.8.1`);
    const up = ofType("peer_up");
    expect(up).toHaveLength(1);
    expect(up[0]).toMatchObject({
      peer_ip: "10.255.8.2",
      peer_asn: BIRD_AS,
      bgp_id: "10.255.8.2",
      local_ip: "10.255.8.1",
      is_in: 1,
    });
    // One side of the session is port 179 (whoever connected first).
    expect([up[0]?.local_port, up[0]?.remote_port]).toContain(179);
    // Pre-policy Adj-RIB-In: exactly what BIRD exports, as BIRD sent it.
    const exported = bird.cmd("show", "route", "export", "oc", "count");
    expect(exported).toMatch(new RegExp(`\\b${SENT.length} of \\d+ routes`));
    const rmIn = ofType("route_monitor").filter((e) => e.is_in === 1 && e.log_type === "update");
    expect(new Set(rmIn.map((e) => e.ip_prefix))).toEqual(new Set(SENT));
    for (const e of rmIn) {
      expect(e).toMatchObject({ as_path: String(BIRD_AS), comms: "65020:7", is_post: 0 });
      expect(e.bgp_nexthop).toBe("10.255.8.2");
    }
    // Post-policy Adj-RIB-Out (RFC 8671): our origination as sent to BIRD.
    const rmOut = ofType("route_monitor").filter((e) => e.is_out === 1 && e.ip_prefix === OURS);
    expect(rmOut[0]).toMatchObject({ as_path: String(OC_AS), is_post: 1 });
    // Ocelot's own view of the peer says the same count.
    expect(ocelot.peer("10.255.8.2")?.prefixes.received).toBe(SENT.length);
    // --mrt-updates: the same UPDATEs as BGP4MP records, read by bgpdump where installed.
    if (have("bgpdump")) {
      const files = readdirSync(mrtDir).map((f) => join(mrtDir, f));
      expect(files.length, files.join(" ")).toBe(1);
      const r = runSync("bgpdump", ["-m", ...files]);
      expect(r.status, r.stderr).toBe(0);
      const announced = r.stdout
        .split("\n")
        .filter((l) => l.startsWith("BGP4MP|"))
        .map((l) => l.split("|"));
      expect(new Set(announced.map((f) => f[5]))).toEqual(new Set(SENT));
      for (const f of announced) {
        expect(f.slice(2, 5)).toEqual(["A", "10.255.8.2", String(BIRD_AS)]);
        expect([f[6], f[8]]).toEqual([String(BIRD_AS), "10.255.8.2"]);
        expect(f[11]).toBe("65020:7");
      }
    } else console.warn("bgpdump not installed: the MRT update file is not read back here");
  });

  it("ocelot routes PREFIX: BIRD's path with its reason, checked against the real kernel", async () => {
    const routeOf = (prefix: string) => {
      const [cmd, args] = oc.wrap(
        process.execPath,
        join(REPO_ROOT, "bin/ocelot"),
        "routes",
        prefix,
        "--json",
        "--socket",
        ocelot.socket,
      );
      const r = runSync(cmd, args);
      return { status: r.status, out: JSON.parse(r.stdout || "null"), stderr: r.stderr };
    };
    await waitFor(
      "10.98.1.0/24 installed",
      () => routeOf(SENT[0] as string).out?.kernel?.state === "installed",
      20_000,
      200,
    );
    const r = routeOf(SENT[0] as string);
    expect(r.status, r.stderr).toBe(0);
    expect(r.out.route.paths).toHaveLength(1);
    expect(r.out.route.paths[0]).toMatchObject({
      peer: "10.255.8.2",
      asPath: String(BIRD_AS),
      communities: ["65020:7"],
      accepted: true,
      best: true,
    });
    expect(r.out.kernel).toMatchObject({ expected: ["10.255.8.2"], found: ["10.255.8.2"] });
    // Compared with the kernel's own view.
    const ipRoute = JSON.parse(oc.exec("ip", "-j", "route", "show", SENT[0] as string)) as {
      gateway?: string;
      protocol?: string;
    }[];
    expect(ipRoute.map((x) => [x.gateway, String(x.protocol)])).toEqual([["10.255.8.2", "201"]]);
    const [tcmd, targs] = oc.wrap(
      process.execPath,
      join(REPO_ROOT, "bin/ocelot"),
      "routes",
      SENT[0] as string,
      "--socket",
      ocelot.socket,
    );
    const text = runSync(tcmd, targs);
    expect(text.stdout).toContain(`${SENT[0]}: 1 path(s), best by`);
    expect(text.stdout).toContain("* 10.255.8.2 (eBGP)  via 10.255.8.2  AS path 65020");
    expect(text.stdout).toContain("Kernel: installed via 10.255.8.2, as expected");
    // Our origination: nothing to install (the RIB's next hop is ours), nothing there.
    const own = routeOf(OURS);
    expect(own.status, own.stderr).toBe(0);
    expect(own.out.route.paths[0]).toMatchObject({ peer: "local", best: true });
    expect(own.out.kernel.state).toBe("absent");
    // A prefix no one sent: not in the RIB, not in the kernel.
    const none = routeOf("10.97.0.0/24");
    expect([none.status, none.out.route, none.out.kernel.state]).toEqual([0, null, "absent"]);
    // Deleted by hand: the FIB puts it back (its netlink watch), and routes says so again.
    oc.exec("ip", "route", "del", SENT[0] as string, "proto", "201");
    await waitFor(
      "10.98.1.0/24 back in the kernel",
      () => routeOf(SENT[0] as string).out?.kernel?.state === "installed",
      20_000,
      200,
    );
  });

  it("BIRD shuts the session: Peer Down reason 3 (NOTIFICATION from the peer), then up again", async () => {
    bird.cmd("disable", "oc");
    await waitFor("pmbmpd logs a peer_down", () => ofType("peer_down").length === 1, 20_000, 200);
    expect(ofType("peer_down")[0]).toMatchObject({ peer_ip: "10.255.8.2", reason_type: 3 });
    bird.cmd("enable", "oc");
    await waitFor("a second peer_up", () => ofType("peer_up").length === 2, 20_000, 200);
    const text = httpGetIn(oc, METRICS, "/metrics")[1];
    expect(metricSample(text, "ocelot_bmp_station_connected")).toBe(1);
    expect(metricSample(text, "ocelot_bmp_peer_up_total")).toBe(2);
    expect(metricSample(text, "ocelot_bmp_peer_down_total"), text).toBe(1);
    expect(metricSample(text, "ocelot_bmp_messages_dropped_total")).toBe(0);
    expect(metricSample(text, "ocelot_bmp_route_monitoring_total")).toBeGreaterThanOrEqual(
      2 * SENT.length,
    );
  });

  it("a restarted station gets Initiation, the Peer Up of the session already up and its routes (dump, End-of-RIB)", async () => {
    const before = ofType("route_monitor").length;
    expect(before).toBeGreaterThan(0);
    const m3 = httpGetIn(oc, METRICS, "/metrics")[1];
    expect(metricSample(m3, "ocelot_bmp_connects_total"), m3).toBe(1);
    // The session (up again since the last test) holds BIRD's routes before the station goes.
    await waitFor(
      "BIRD's 3 routes received again",
      () => ocelot.peer("10.255.8.2")?.prefixes.received === SENT.length,
      20_000,
      200,
    );
    const dumpedBefore = metricSample(m3, "ocelot_bmp_dump_route_monitoring_total") as number;
    stopStation();
    await startStation("station2");
    // The client retries with backoff (1 s doubling): the new station is found again.
    await waitFor(
      "the new pmbmpd logs init and peer_up",
      () => ofType("init").length === 1 && ofType("peer_up").length === 1,
      30_000,
      200,
    );
    const m4 = httpGetIn(oc, METRICS, "/metrics")[1];
    expect(metricSample(m4, "ocelot_bmp_connects_total"), m4).toBe(2);
    expect(ofType("peer_up")[0]).toMatchObject({ peer_ip: "10.255.8.2", bgp_id: "10.255.8.2" });
    // RFC 7854 §5: the routes BIRD sent before this station connected, from the Adj-RIB-In
    // (BIRD sends nothing new meanwhile): pre-policy, as BIRD sent them, in one UPDATE, then
    // End-of-RIB (read back from the capture in the last test).
    await waitFor(
      "the new pmbmpd logs the 3 prefixes BIRD sent before it connected",
      () => {
        const rm = ofType("route_monitor").filter((e) => e.is_in === 1);
        return SENT.every((p) => rm.some((e) => e.ip_prefix === p));
      },
      30_000,
      200,
    );
    const dumped = ofType("route_monitor").filter((e) => e.is_in === 1 && e.log_type === "update");
    expect(new Set(dumped.map((e) => e.ip_prefix))).toEqual(new Set(SENT));
    for (const e of dumped)
      expect(e).toMatchObject({
        peer_ip: "10.255.8.2",
        as_path: String(BIRD_AS),
        comms: "65020:7",
        bgp_nexthop: "10.255.8.2",
        is_post: 0,
      });
    await waitFor(
      "the dump written",
      () => metricSample(httpGetIn(oc, METRICS, "/metrics")[1], "ocelot_bmp_dumps_total") === 2,
      20_000,
      200,
    );
    // This station's dump: 1 UPDATE (the 3 prefixes share their attributes) and End-of-RIB.
    const m5 = httpGetIn(oc, METRICS, "/metrics")[1];
    expect(metricSample(m5, "ocelot_bmp_dump_route_monitoring_total"), m5).toBe(dumpedBefore + 2);
    dumpMessages = dumpedBefore + 2;
    await waitFor("a stats report", () => ofType("stats").length > 0, 20_000, 200);
  });

  it("bgpd stops: Termination; tshark and Ocelot's decoder read the capture without an error", async () => {
    lab.stop(ocelot.pid);
    await waitFor("pmbmpd logs term", () => ofType("term").length === 1, 20_000, 200);
    expect(ofType("term")[0]?.bmp_term_info_reason).toBe("Session administratively closed");
    // Let the capture see the last segments, then stop it (SIGINT: tshark finishes the file).
    await new Promise((r) => setTimeout(r, 1000));
    const pid = capture?.pid as number;
    process.kill(pid, "SIGINT");
    await waitFor(
      "tshark to exit",
      () => !existsSync(`/proc/${pid}`) || /Z/.test(procState(pid)),
      30_000,
    );
    const decodeAs = ["-d", `tcp.port==${PORT},bmp`];
    const types = runSync("tshark", [
      "-r",
      pcap,
      ...decodeAs,
      "-Y",
      "bmp",
      "-T",
      "fields",
      "-e",
      "bmp.type",
    ]);
    expect(types.status, types.stderr).toBe(0);
    const seen = types.stdout.split(/[\n,]/).filter(Boolean).map(Number);
    // Route Monitoring 0, Statistics 1, Peer Down 2, Peer Up 3, Initiation 4, Termination 5.
    expect(new Set(seen)).toEqual(new Set([0, 1, 2, 3, 4, 5]));
    const bad = runSync("tshark", [
      "-r",
      pcap,
      ...decodeAs,
      "-Y",
      '_ws.malformed || _ws.expert.severity >= "warning" && bmp',
    ]);
    expect(bad.status, bad.stderr).toBe(0);
    expect(bad.stdout.trim()).toBe("");
    // Every TCP stream's bytes through Ocelot's decoder: the same messages tshark saw.
    const mine: BmpMessage[] = [];
    for (let stream = 0; stream < 2; stream++) {
      const r = runSync("tshark", ["-r", pcap, "-q", "-z", `follow,tcp,raw,${stream}`]);
      expect(r.status, r.stderr).toBe(0);
      const hex = r.stdout
        .split("\n")
        .filter((l) => /^[0-9a-f]+$/.test(l))
        .join("");
      const { messages, rest } = decodeStream(Buffer.from(hex, "hex"));
      expect(rest.length).toBe(0);
      mine.push(...messages);
    }
    const names = [
      "RouteMonitoring",
      "StatisticsReport",
      "PeerDown",
      "PeerUp",
      "Initiation",
      "Termination",
    ];
    expect(mine.map((m) => names.indexOf(m.type))).toEqual(seen);
    // The dumps (time 0: unavailable), the second station's last: the UPDATE, then End-of-RIB.
    const dump = mine.filter((m) => m.type === "RouteMonitoring" && m.peer.timeSeconds === 0);
    expect(dump.map((m) => (m.type === "RouteMonitoring" ? m.update.length : 0)).at(-1)).toBe(23);
    expect(dump.length).toBe(dumpMessages);
    const down = mine.find((m) => m.type === "PeerDown");
    // BIRD's Cease (6) as the NOTIFICATION PDU of reason 3.
    expect(down?.type === "PeerDown" && down.data[18]).toBe(3);
    expect(down?.type === "PeerDown" && down.data[19]).toBe(6);
  });
});

function procState(pid: number): string {
  try {
    return /^State:\s+(\S)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? "";
  } catch {
    return "";
  }
}
