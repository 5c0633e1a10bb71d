// /metrics, /livez and /readyz of the real `ocelot bgpd --metrics-address` on its namespace's
// loopback, read with curl inside the namespace, against a BIRD 2 peer: /readyz is 503 naming
// the peer while BIRD is not running yet, then the session's state series becomes Established
// (1), prefixes received equals the routes BIRD sends, the Loc-RIB and the FIB count them, and
// /readyz is 200; a bad --metrics-address and a port in use are refused by name.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HANG_MS, runSync } from "../helpers/limits.js";
import { httpGetIn, metricSample } from "../helpers/metrics.js";
import { link, Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  type BirdPeer,
  kernelRoutes,
  type OcelotPeer,
  PeerLab,
  peersUnavailableReason,
  REPO_ROOT,
} from "../helpers/peers.js";

const reason = netnsUnavailableReason() ?? peersUnavailableReason(["bird"]);
const skip = skipWithReason("bgpd metrics with BIRD", reason);
if (!skip && runSync("curl", ["--version"]).status !== 0) throw new Error("curl is missing");

const BIRD_AS = 65020;
const OC_AS = 64512;
const PORT = 9091;
const SENT = ["10.98.1.0/24", "10.98.2.0/24", "10.98.3.0/24"];

const birdConf = `
log "@DIR@/bird.log" all;
router id 10.255.7.2;
protocol device { }
protocol static s4 { ipv4; ${SENT.map((p) => `route ${p} blackhole;`).join(" ")} }
protocol bgp oc {
  local 10.255.7.2 as ${BIRD_AS};
  neighbor 10.255.7.1 as ${OC_AS};
  hold time 6;
  connect delay time 1; connect retry time 1;
  ipv4 { import all; export where source = RTS_STATIC; };
}
`;

describe.skipIf(skip)("ocelot bgpd --metrics-address with BIRD 2", () => {
  let lab: PeerLab;
  let oc: Netns;
  let br: Netns;
  let ocelot: OcelotPeer;
  let bird: BirdPeer | undefined;

  beforeAll(() => {
    lab = new PeerLab();
    oc = Netns.create("mto");
    br = Netns.create("mtb");
    link(oc, "oc-br", "10.255.7.1/30", br, "br-oc", "10.255.7.2/30");
    ocelot = lab.startOcelot(
      oc,
      "ocelot",
      {
        asn: OC_AS,
        routerId: "10.255.7.1",
        listen: { address: "0.0.0.0", port: 179 },
        peers: [
          {
            address: "10.255.7.2",
            asn: BIRD_AS,
            holdTime: 6,
            connectRetryTime: 1,
            families: ["ipv4-unicast"],
          },
        ],
        originate: [{ prefix: "10.244.7.0/26" }],
        fib: { enabled: true, table: "main", protocol: 201 },
      },
      ["--metrics-address", `127.0.0.1:${PORT}`],
    );
  });

  afterAll(() => {
    lab?.cleanup();
    oc?.destroy();
    br?.destroy();
  });

  const get = (path: string) => httpGetIn(oc, PORT, path);
  const peer = 'peer="10.255.7.2",asn="65020",afi="ipv4-unicast"';

  it("before the peer is up: /livez 200, /readyz 503 naming the peer, state not Established", () => {
    expect(get("/livez")[0]).toBe(200);
    const [code, body] = get("/readyz");
    expect(code).toBe(503);
    expect(body).toMatch(
      /^not ok: BGP not established with 10\.255\.7\.2 \((Idle|Connect|Active)\)/,
    );
    const [mc, metrics] = get("/metrics");
    expect(mc).toBe(200);
    expect(metricSample(metrics, `ocelot_bgp_peer_state{${peer},state="Established"}`)).toBe(0);
    expect(metricSample(metrics, "ocelot_bgp_speaker_running")).toBe(1);
  });

  it("with BIRD up: Established 1, prefixes received = routes BIRD sends, /readyz 200", async () => {
    bird = lab.startBird(br, "bird", birdConf);
    let text = "";
    await waitFor(
      "ocelot_bgp_peer_state Established 1 and 3 prefixes received",
      () => {
        text = get("/metrics")[1];
        return (
          metricSample(text, `ocelot_bgp_peer_state{${peer},state="Established"}`) === 1 &&
          metricSample(text, `ocelot_bgp_peer_prefixes_received{${peer}}`) === SENT.length
        );
      },
      20_000,
      200,
    );
    // What BIRD says it exports, read from BIRD itself.
    const exported = bird.cmd("show", "route", "export", "oc", "count");
    expect(exported).toMatch(new RegExp(`\\b${SENT.length} of \\d+ routes`));
    expect(metricSample(text, `ocelot_bgp_peer_prefixes_accepted{${peer}}`)).toBe(SENT.length);
    // The same numbers as the status socket's.
    const st = ocelot.peer("10.255.7.2");
    expect(st?.prefixes.received).toBe(
      metricSample(text, `ocelot_bgp_peer_prefixes_received{${peer}}`),
    );
    expect(metricSample(text, `ocelot_bgp_peer_established_transitions_total{${peer}}`)).toBe(1);
    expect(metricSample(text, `ocelot_bgp_peer_updates_received_total{${peer}}`)).toBeGreaterThan(
      0,
    );
    expect(metricSample(text, 'ocelot_bgp_loc_rib_routes{afi="ipv4"}')).toBe(SENT.length + 1);
    expect(metricSample(text, `ocelot_bgp_peer_state{${peer},state="Active"}`)).toBe(0);
    // The FIB series against the kernel's own table.
    await waitFor(
      "the 3 routes under protocol 201 in the kernel and in ocelot_fib_routes_installed",
      () => {
        const kernel = kernelRoutes(oc, 4).filter((r) => r.protocol === "201").length;
        text = get("/metrics")[1];
        return (
          kernel === SENT.length &&
          metricSample(text, 'ocelot_fib_routes_installed{fib="bgp"}') === kernel
        );
      },
      10_000,
      200,
    );
    const [code, body] = get("/readyz");
    expect(code, body).toBe(200);
    expect(text).toContain("# TYPE ocelot_bgp_peer_messages_received_total counter\n");
    // prom-client's registry, as node run's: default process metrics, histograms.
    expect(metricSample(text, "process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(text).toContain("# TYPE ocelot_event_loop_delay_seconds histogram\n");
    expect(metricSample(text, 'ocelot_fib_batch_seconds_count{fib="bgp"}')).toBeGreaterThan(0);
    // BIRD's 3 routes reached the kernel: at least one batch timed from its UPDATE.
    expect(metricSample(text, "ocelot_bgp_update_to_kernel_seconds_count")).toBeGreaterThan(0);
  });

  it("a bad --metrics-address is refused by name (exit 2), a port in use by name", () => {
    const cfg = join(lab.subdir("second"), "bgpd.yaml");
    writeFileSync(
      cfg,
      JSON.stringify({
        asn: OC_AS,
        routerId: "10.255.7.9",
        listen: { address: "127.0.0.1", port: 1179 },
        peers: [],
        fib: { enabled: false },
        status: { socket: join(lab.dir, "second", "bgpd.sock") },
      }),
    );
    const run = (addr: string) => {
      const [cmd, args] = oc.wrap(
        process.execPath,
        join(REPO_ROOT, "bin/ocelot"),
        "bgpd",
        "--config",
        cfg,
        "--metrics-address",
        addr,
      );
      return runSync(cmd, args, { encoding: "utf8", timeout: HANG_MS });
    };
    const bad = run("0.0.0.0");
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--metrics-address: "0.0.0.0" is not host:port');
    const inUse = run(`127.0.0.1:${PORT}`);
    expect(inUse.status, inUse.stderr).toBe(1);
    expect(inUse.stderr).toContain(
      `--metrics-address 127.0.0.1:${PORT}: the port is in use by another process (EADDRINUSE)`,
    );
    // The first bgpd still answers.
    expect(get("/livez")[0]).toBe(200);
  });
});
