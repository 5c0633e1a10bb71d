// `ocelot node status` against real daemons: two `ocelot node run` (a node-to-node mesh) and
// BIRD 2 as a global BGPPeer on one bridge, on the embedded store. Run inside node1's namespace
// without flags, it finds node1's daemon (its namespace's well-known socket); its --json
// validates against config/node-status.schema.json (ajv); its numbers equal what BIRD reports in
// `birdc show protocols all` (BIRD's exported = our received; one prefix rejected by a BGPFilter
// is explained as such), what the other node received, and what the kernel holds (installed is
// read from the kernel). A session BIRD shuts down counts one flap and shows the NOTIFICATION
// with its RFC reason. The same cluster proves the operator's other views: node1's /metrics
// (prom-client) parsed by parse-prometheus-text-format and checked against BIRD and the Grafana
// dashboard's queries; `ocelot routes --mrt` (TABLE_DUMP_V2) and `--mrt-updates` (BGP4MP of every
// UPDATE received) read by Debian's bgpdump; each node's CalicoNodeStatus, stale once stopped.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv } from "ajv";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResourceClient } from "../../src/api/client.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import type { NodeStatusReport, PeerReport } from "../../src/node/node_status.js";
import { runSync } from "../helpers/limits.js";
import { httpGetIn, metricSample } from "../helpers/metrics.js";
import { link, Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { type BirdPeer, PeerLab, peersUnavailableReason } from "../helpers/peers.js";
import { BIN, daemonTestsUnavailable, type NodeProcess, routes, startNode } from "./harness.js";

const skip = skipWithReason(
  "ocelot node status with BIRD",
  daemonTestsUnavailable() ??
    peersUnavailableReason(["bird"]) ??
    (runSync("sh", ["-c", "command -v bgpdump"]).status === 0
      ? undefined
      : "bgpdump not installed (scripts/setup.sh installs it)"),
);

const BIRD_IP = "10.93.0.3";
const BIRD_AS = 65020;
const N1 = "10.93.0.1";
const N2 = "10.93.0.2";
const KEPT = ["10.94.1.0/24", "10.94.2.0/24"];
const FILTERED = "10.94.9.0/24";

const birdConf = `
log "@DIR@/bird.log" all;
router id ${BIRD_IP};
protocol device { }
protocol static s4 { ipv4; ${[...KEPT, FILTERED].map((p) => `route ${p} blackhole;`).join(" ")} }
protocol bgp node1 {
  local ${BIRD_IP} as ${BIRD_AS};
  neighbor ${N1} as 64512;
  hold time 9;
  connect delay time 1;
  error wait time 1, 2;
  ipv4 {
    import all;
    export filter {
      if source != RTS_STATIC then reject;
      if net = ${KEPT[0]} then { bgp_community.add((${BIRD_AS}, 7)); bgp_med = 20; }
      accept;
    };
  };
}
`;

const V3 = "projectcalico.org/v3";
const METRICS_PORT = 9093;
const schema = JSON.parse(
  readFileSync(new URL("../../config/node-status.schema.json", import.meta.url), "utf8"),
) as object;

describe.skipIf(skip)("ocelot node status: a mesh node and BIRD as a global peer", () => {
  let dir: string;
  let store: SqliteDatastore;
  let lab: PeerLab;
  let bird: BirdPeer;
  let birdNs: Netns;
  const ns: Netns[] = [];
  const daemons: NodeProcess[] = [];

  /** `ocelot node status [--json]` run inside ns, with no flag naming the daemon. */
  const nodeStatus = (n: Netns, json = true) => {
    const r = runSync("ip", [
      ...["netns", "exec", n.name, join(BIN, "ocelot"), "node", "status"],
      ...(json ? ["--json"] : []),
    ]);
    if (r.status !== 0) throw new Error(`ocelot node status failed: ${r.stderr}`);
    return r.stdout;
  };
  const report = (n: Netns) => JSON.parse(nodeStatus(n)) as NodeStatusReport;
  const peer = (r: NodeStatusReport, address: string) =>
    r.peersV4.find((p) => p.peerAddress === address) as PeerReport;
  /** BIRD's own counts for its session to node1: [imported, filtered, exported]. */
  const birdCounts = (): number[] => {
    const m = /Routes:\s+(\d+) imported, (?:(\d+) filtered, )?(\d+) exported/.exec(
      bird.cmd("show", "protocols", "all", "node1"),
    );
    return m ? [Number(m[1]), Number(m[2] ?? 0), Number(m[3])] : [];
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-nodestatus-"));
    store = new SqliteDatastore(join(dir, "store.db"));
    const client = new ResourceClient(store);
    await client.write("apply", {
      apiVersion: V3,
      kind: "BGPFilter",
      metadata: { name: "bird-in" },
      spec: { importV4: [{ action: "Reject", cidr: FILTERED, matchOperator: "Equal" }] },
    });
    await client.write("apply", {
      apiVersion: V3,
      kind: "BGPPeer",
      metadata: { name: "bird" },
      spec: { peerIP: BIRD_IP, asNumber: BIRD_AS, filters: ["bird-in"], keepaliveTime: "3s" },
    });
    lab = new PeerLab();
    birdNs = Netns.create("nsb");
    birdNs.ip("link", "add", "fabric", "type", "bridge");
    birdNs.ip("addr", "add", `${BIRD_IP}/24`, "dev", "fabric");
    birdNs.ip("link", "set", "fabric", "up");
    for (const [i, ip] of [N1, N2].entries()) {
      const n = Netns.create(`ns${i + 1}`);
      link(n, "eth0", `${ip}/24`, birdNs, `p${i + 1}`, undefined);
      birdNs.ip("link", "set", `p${i + 1}`, "master", "fabric");
      ns.push(n);
    }
    bird = lab.startBird(birdNs, "bird", birdConf);
    const url = `file:${join(dir, "store.db")}`;
    for (const [i, ip] of [N1, N2].entries()) {
      // No --status-socket: each daemon listens on its namespace's well-known path.
      daemons.push(
        await startNode(ns[i] as Netns, [
          ...["--nodename", `node${i + 1}`, "--ip", `${ip}/24`, "--datastore", url],
          ...["--node-status-interval", "1s"],
          ...(i === 0
            ? [
                ...["--metrics-address", `127.0.0.1:${METRICS_PORT}`],
                ...["--mrt-updates", join(dir, "updates")],
              ]
            : []),
        ]),
      );
    }
  });

  afterAll(async () => {
    for (const d of daemons) await d.stop();
    lab?.cleanup();
    for (const n of [...ns, birdNs]) n?.destroy();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("shows the mesh peer and BIRD with calicoctl's peer types, and counts equal BIRD's, the other node's and the kernel's", async () => {
    const n1 = ns[0] as Netns;
    const n2 = ns[1] as Netns;
    await waitFor(
      "node1's sessions Established and BIRD's routes in node1's and node2's kernels",
      () => {
        const r = report(n1);
        const learned2 = routes(n2, "201").map((x) => x.dst);
        return (
          r.peersV4.length === 2 &&
          r.peersV4.every((p) => p.state === "up") &&
          peer(r, BIRD_IP).families[0]?.installed === KEPT.length &&
          KEPT.every((p) => learned2.includes(p))
        );
      },
      60_000,
      250,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${daemons[0]?.log}\n${bird.log()}`);
    });
    const r = report(n1);
    const validate = new Ajv({ allErrors: true, strict: true }).compile(schema);
    expect(validate(r), JSON.stringify(validate.errors)).toBe(true);
    expect(r.node).toBe("node1");
    expect(r.routerId).toBe(N1);
    expect(r.peersV6).toEqual([]);

    const mesh = peer(r, N2);
    expect(mesh).toMatchObject({
      peerType: "node-to-node mesh",
      calicoType: "NodeMesh",
      source: "node2",
      state: "up",
      bgpState: "Established",
      info: "Established",
      flaps: 0,
      lastNotification: null,
    });
    const b = peer(r, BIRD_IP);
    expect(b).toMatchObject({
      peerType: "global",
      calicoType: "GlobalPeer",
      source: "bird",
      asn: BIRD_AS,
      state: "up",
    });
    // BIRD: 3 exported to us, nothing imported from us (eBGP export is our blocks only).
    const [imported, , exported] = birdCounts();
    const f = b.families[0];
    expect(f?.family).toBe("ipv4-unicast");
    expect(f?.received).toBe(exported);
    expect(f?.received).toBe(KEPT.length + 1);
    expect(f?.rejectedByFilter).toBe(1);
    expect(f?.rejected).toBe(1);
    expect(f?.rejectedByReason).toEqual({ FilterReject: 1 });
    expect(f?.accepted).toBe(KEPT.length);
    expect(f?.advertised).toBe(imported);
    // Installed is read from the kernel: BIRD's accepted routes are there under protocol 201.
    const kernel = routes(n1, "201").map((x) => x.dst);
    expect(kernel.sort()).toEqual([...KEPT].sort());
    expect(f?.installed).toBe(kernel.length);
    expect(r.kernel).toEqual({ checked: true, installed: KEPT.length });
    // What node1 advertises to node2 is what node2 received from node1.
    const r2 = report(n2);
    expect(peer(r2, N1).families[0]?.received).toBe(mesh.families[0]?.advertised);
    expect(mesh.families[0]?.advertised).toBe(KEPT.length);

    const text = nodeStatus(n1, false);
    expect(text).toContain("| PEER ADDRESS |     PEER TYPE     | STATE |");
    expect(text).toMatch(
      new RegExp(`\\| ${N2.replaceAll(".", "\\.")} +\\| node-to-node mesh \\| up `),
    );
    expect(text).toMatch(new RegExp(`\\| ${BIRD_IP.replaceAll(".", "\\.")} +\\| global +\\| up `));
    expect(text).toContain("No IPv6 peers found.");
  });

  it("a session BIRD shuts down and brings back counts one flap and shows the NOTIFICATION it sent with the RFC reason", async () => {
    const n1 = ns[0] as Netns;
    bird.cmd("disable", "node1");
    await waitFor(
      "node1 to see BIRD's session down",
      () => peer(report(n1), BIRD_IP).state === "start",
      60_000,
      250,
    );
    const down = peer(report(n1), BIRD_IP);
    expect(down.lastNotification).toMatchObject({
      direction: "received",
      code: 6,
      subcode: 2,
      reason: "Cease / AdministrativeShutdown",
    });
    expect(down.info).toContain("Cease / AdministrativeShutdown");
    bird.cmd("enable", "node1");
    await waitFor(
      "the session back up",
      () => peer(report(n1), BIRD_IP).state === "up",
      60_000,
      250,
    );
    const up = peer(report(n1), BIRD_IP);
    expect(up.flaps).toBe(1);
    expect(up.establishedTransitions).toBe(2);
    expect(bird.state("node1")).toBe("Established");
    const validate = new Ajv({ strict: true }).compile(schema);
    expect(validate(report(n1)), JSON.stringify(validate.errors)).toBe(true);
  });

  it("a scrape of node1 (prom-client) parses as Prometheus text and agrees with BIRD: prefixes, the rejected one by reason, the NOTIFICATION and session changes of the flap, histograms; every query of the Grafana dashboard names a metric it has", () => {
    const n1 = ns[0] as Netns;
    const [code, text] = httpGetIn(n1, METRICS_PORT, "/metrics");
    expect(code).toBe(200);
    const families = parsePrometheusTextFormat(text);
    const byName = new Map(families.map((f) => [f.name, f]));
    // Default process metrics, and the names the hand-written registry had are kept.
    for (const name of [
      "process_cpu_seconds_total",
      "process_resident_memory_bytes",
      "nodejs_heap_size_used_bytes",
      "ocelot_bgp_peer_state",
      "ocelot_bgp_peer_prefixes_received",
      "ocelot_fib_routes_installed",
      "ocelot_agent_convergences_total",
    ])
      expect(byName.has(name), name).toBe(true);
    expect(byName.get("ocelot_bgp_peer_prefixes_received")?.type).toBe("GAUGE");
    expect(byName.get("ocelot_bgp_notifications_total")?.type).toBe("COUNTER");
    for (const h of [
      "ocelot_event_loop_delay_seconds",
      "ocelot_convergence_seconds",
      "ocelot_iptables_apply_seconds",
      "ocelot_fib_batch_seconds",
    ])
      expect(byName.get(h)?.type, h).toBe("HISTOGRAM");
    const [imported, , exported] = birdCounts();
    const peerLabels = `peer="${BIRD_IP}",asn="${BIRD_AS}",afi="ipv4-unicast"`;
    expect(metricSample(text, `ocelot_bgp_peer_prefixes_received{${peerLabels}}`)).toBe(exported);
    expect(metricSample(text, `ocelot_bgp_peer_prefixes_advertised{${peerLabels}}`)).toBe(imported);
    // The filtered prefix was refused once per session: before and after the flap.
    expect(
      metricSample(text, `ocelot_bgp_routes_rejected_total{${peerLabels},reason="FilterReject"}`),
    ).toBe(2);
    // The flap of the test before: BIRD's Cease/AdministrativeShutdown received once, and the
    // session to BIRD came up twice and went down once.
    expect(
      metricSample(
        text,
        'ocelot_bgp_notifications_total{direction="received",code="6",subcode="2"}',
      ),
    ).toBe(1);
    expect(
      metricSample(
        text,
        `ocelot_bgp_session_changes_total{peer="${BIRD_IP}",change="established"}`,
      ),
    ).toBe(2);
    expect(
      metricSample(text, `ocelot_bgp_session_changes_total{peer="${BIRD_IP}",change="down"}`),
    ).toBe(1);
    expect(metricSample(text, 'ocelot_convergence_seconds_count{area="agent"}')).toBeGreaterThan(0);
    expect(metricSample(text, "ocelot_iptables_apply_seconds_count")).toBeGreaterThan(0);
    expect(metricSample(text, "ocelot_event_loop_delay_seconds_count")).toBeGreaterThan(0);

    // Every metric a dashboard query names is in the scrape (histograms by their _bucket series).
    const dashboard = JSON.parse(
      readFileSync(new URL("../../config/grafana-dashboard.json", import.meta.url), "utf8"),
    ) as { panels: { targets: { expr: string }[] }[] };
    const series = new Set(
      text
        .split("\n")
        .filter((l) => l !== "" && !l.startsWith("#"))
        .map((l) => l.split(/[{ ]/)[0]),
    );
    // The BFD panels are ocelot bgpd's (the node daemon runs no BFD).
    const named = dashboard.panels
      .flatMap((p) => p.targets.map((t) => t.expr))
      .flatMap((e) => e.match(/\b(?:ocelot|process|nodejs)_[a-zA-Z0-9_]+/g) ?? [])
      .filter((m) => !m.startsWith("ocelot_bfd_"));
    expect(named.length).toBeGreaterThan(15);
    expect(named.filter((m) => !series.has(m))).toEqual([]);
  });

  it("ocelot routes --mrt writes the RIB as MRT TABLE_DUMP_V2 that bgpdump -m reads back as ocelot routes shows it", () => {
    const n1 = ns[0] as Netns;
    const ocelot = (...args: string[]) => {
      const r = runSync("ip", ["netns", "exec", n1.name, join(BIN, "ocelot"), ...args]);
      if (r.status !== 0) throw new Error(`ocelot ${args.join(" ")} failed: ${r.stderr}`);
      return r.stdout;
    };
    const file = join(dir, "rib.mrt");
    expect(ocelot("routes", "--mrt", file)).toMatch(/^Wrote 2 routes of 3 peers to /);
    const dump = runSync("bgpdump", ["-m", file]);
    expect(dump.status).toBe(0);
    const ours = (
      JSON.parse(ocelot("routes", "--json")) as {
        routes: {
          prefix: string;
          best: {
            peer: string;
            nextHop: string;
            asPath: string;
            origin: string;
            localPref: number | null;
            med: number | null;
            communities: string[];
          };
        }[];
      }
    ).routes;
    expect(ours.map((r) => r.prefix).sort()).toEqual([...KEPT].sort());
    // prefix -> [peer, peer AS, AS path, origin, next hop, local pref, MED, communities]
    const fromDump = dump.stdout
      .trim()
      .split("\n")
      .map((l) => l.split("|"))
      .map((f) => [f[5], [f[3], f[4], f[6], f[7], f[8], f[9], f[10], f[11]]]);
    expect(Object.fromEntries(fromDump)).toEqual(
      Object.fromEntries(
        ours.map((r) => [
          r.prefix,
          [
            r.best.peer,
            String(BIRD_AS),
            r.best.asPath,
            r.best.origin.toUpperCase(),
            r.best.nextHop,
            String(r.best.localPref ?? 0),
            String(r.best.med ?? 0),
            r.best.communities.join(" "),
          ],
        ]),
      ),
    );
    // Every UPDATE node1 received went to BGP4MP_MESSAGE_AS4 files: bgpdump reads an
    // announcement of each of BIRD's prefixes (before import policy: the filtered one too) in
    // each of the two sessions (before and after the flap), with what ocelot routes shows, and
    // no more: node2 joining changes only node1's import guard toward BIRD (its rule for node2's
    // address), applied from the paths held, with no ROUTE-REFRESH for BIRD to answer.
    const files = readdirSync(join(dir, "updates")).map((f) => join(dir, "updates", f));
    expect(files.length).toBeGreaterThan(0);
    const announced = files
      .flatMap((f) => {
        const r = runSync("bgpdump", ["-m", f]);
        expect(r.status).toBe(0);
        return r.stdout.trim().split("\n");
      })
      .map((l) => l.split("|"))
      .filter((f) => f[0] === "BGP4MP" && f[2] === "A" && f[3] === BIRD_IP);
    for (const p of [...KEPT, FILTERED])
      expect(announced.filter((f) => f[5] === p).length, p).toBe(2);
    for (const r of ours) {
      const f = announced.find((x) => x[5] === r.prefix) ?? [];
      expect([f[4], f[6], f[7], f[8], f[10], f[11]]).toEqual([
        String(BIRD_AS),
        r.best.asPath,
        r.best.origin.toUpperCase(),
        r.best.nextHop,
        String(r.best.med ?? 0),
        r.best.communities.join(" "),
      ]);
    }
    // What BIRD sent: its AS, its community and MED on the first prefix.
    const first = ours.find((r) => r.prefix === KEPT[0]);
    expect(first?.best).toMatchObject({
      asPath: String(BIRD_AS),
      communities: [`${BIRD_AS}:7`],
      med: 20,
    });
  });

  it("every node writes its CalicoNodeStatus: `ocelot get caliconodestatus -o wide` shows both nodes' sessions, and a stopped node as stale with the time it last wrote", async () => {
    const url = `file:${join(dir, "store.db")}`;
    const get = (...args: string[]) => {
      const r = runSync(join(BIN, "ocelot"), [
        "get",
        "caliconodestatus",
        ...args,
        "--datastore",
        url,
      ]);
      if (r.status !== 0) throw new Error(`ocelot get caliconodestatus failed: ${r.stderr}`);
      return r.stdout;
    };
    type Cns = {
      metadata: { name: string };
      spec: { node: string; updatePeriodSeconds: number };
      status: {
        lastUpdated: string;
        agent: { birdV4: { state: string; routerID: string } };
        bgp: {
          numberEstablishedV4: number;
          peersV4: { peerIP: string; type: string; state: string }[];
        };
        routes: {
          routesV4: { destination: string; learnedFrom: { sourceType: string; peerIP?: string } }[];
        };
      };
    };
    const items = () => (JSON.parse(get("-o", "json")) as { items: Cns[] }).items;
    await waitFor(
      "both nodes' CalicoNodeStatus: node1's sessions Established, node2's to node1, both with every route",
      () => {
        const all = items();
        const of = (n: string) => all.find((c) => c.metadata.name === n)?.status.bgp;
        return (
          of("node1")?.numberEstablishedV4 === 2 &&
          of("node2")?.peersV4.find((p) => p.peerIP === N1)?.state === "Established" &&
          // Each written at most once a second: the writes after node1 and node2 learned every
          // route (node2's can come before node1's: BGP routes reach node2 at once).
          all.find((c) => c.metadata.name === "node1")?.status.routes.routesV4.length ===
            KEPT.length &&
          all.find((c) => c.metadata.name === "node2")?.status.routes.routesV4.length ===
            KEPT.length
        );
      },
      60_000,
      250,
    ).catch((e) => {
      throw new Error(
        `${(e as Error).message}\n${get("-o", "wide")}\n${daemons.map((d) => d.log).join("\n")}`,
      );
    });
    const n1 = items().find((c) => c.metadata.name === "node1") as Cns;
    expect(n1.spec).toEqual({
      node: "node1",
      classes: ["Agent", "BGP", "Routes"],
      updatePeriodSeconds: 1,
    });
    expect(n1.status.agent.birdV4).toMatchObject({ state: "Ready", routerID: N1 });
    expect(n1.status.bgp.peersV4.map((p) => [p.peerIP, p.type, p.state]).sort()).toEqual(
      [
        [N2, "NodeMesh", "Established"],
        [BIRD_IP, "GlobalPeer", "Established"],
      ].sort(),
    );
    // BIRD's accepted routes, learned from a BGPPeer; node2 learned them from node1 (the mesh).
    expect(
      n1.status.routes.routesV4.map((r) => [r.destination, r.learnedFrom.sourceType]).sort(),
    ).toEqual(KEPT.map((p) => [p, "BGPPeer"]).sort());
    const n2 = items().find((c) => c.metadata.name === "node2") as Cns;
    // BIRD has no session configured for node2: the global BGPPeer's session stays down there.
    expect(n2.status.bgp.peersV4.find((p) => p.peerIP === BIRD_IP)?.state).not.toBe("Established");
    expect(n2.status.routes.routesV4.map((r) => r.learnedFrom).sort()).toEqual(
      KEPT.map(() => ({ sourceType: "NodeMesh", peerIP: N1 })),
    );
    const wide = get("-o", "wide");
    expect(wide).toMatch(
      /NAME\s+NODE\s+V4 UP\/DOWN\s+V6 UP\/DOWN\s+ROUTES\s+AGENT\s+PEERS\s+STATUS/,
    );
    expect(wide).toMatch(
      new RegExp(
        `node1\\s+node1\\s+2/0\\s+0/0\\s+2\\s+Ready\\s+\\S*${N2.replaceAll(".", "\\.")}:Established\\S*\\s+ok`,
      ),
    );

    // node2 stops: its status stays, shown as stale with the time it last wrote; node1's is ok.
    await daemons[1]?.stop();
    const lastWrote = (items().find((c) => c.metadata.name === "node2") as Cns).status.lastUpdated;
    await waitFor(
      "node2 shown as stale",
      () => /node2.*STALE/.test(get("-o", "wide")),
      60_000,
      500,
    );
    const stale = get("-o", "wide");
    expect(stale).toContain(`STALE: last wrote ${lastWrote}`);
    expect(stale).toMatch(/node1\s+node1\s.*\sok \(\d+s ago\)/);
  });
});
