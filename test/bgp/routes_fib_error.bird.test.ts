// `ocelot routes PREFIX [--json]` of a real `ocelot bgpd` peered with BIRD 2 in network
// namespaces, checked against the real kernel: BIRD announces one route with its own next hop
// (installed) and one whose next hop (set by BIRD's export filter) is on no subnet connected to
// the bgpd's namespace, which the kernel refuses. The refused route is shown as not in the
// kernel with the kernel's error (ENETUNREACH: Network is unreachable) and counted in
// ocelot_fib_route_errors_by_errno_total; once the gateway's subnet is added to a link the FIB
// installs it, and the error is gone.
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
const skip = skipWithReason("ocelot routes PREFIX: the FIB's error, with BIRD", reason);
if (!skip && runSync("curl", ["--version"]).status !== 0) throw new Error("curl is missing");

const BIRD_AS = 65021;
const OC_AS = 64512;
const PORT = 9092;
const GOOD = "10.98.1.0/24";
const BAD = "10.98.9.0/24";
/** On no subnet of the bgpd's namespace: the kernel refuses a route via it. */
const FAR_GW = "10.77.0.1";

const birdConf = `
log "@DIR@/bird.log" all;
router id 10.255.8.2;
protocol device { }
protocol static s4 { ipv4; route ${GOOD} blackhole; route ${BAD} blackhole; }
protocol bgp oc {
  local 10.255.8.2 as ${BIRD_AS};
  neighbor 10.255.8.1 as ${OC_AS};
  hold time 6;
  connect delay time 1; connect retry time 1;
  ipv4 {
    import all;
    export filter {
      if source != RTS_STATIC then reject;
      if net = ${BAD} then bgp_next_hop = ${FAR_GW};
      accept;
    };
  };
}
`;

interface RouteJson {
  prefix: string;
  route: { nexthops: string[]; fibError?: { code: string; reason: string; op: string } } | null;
  kernel: {
    state: string;
    expected: string[];
    found: string[];
    error?: { code: string; errno: number; reason: string; message?: string; at: number };
  };
}

describe.skipIf(skip)("ocelot routes PREFIX: a route the kernel refused, with BIRD 2", () => {
  let lab: PeerLab;
  let oc: Netns;
  let br: Netns;
  let ocelot: OcelotPeer;
  let bird: BirdPeer;

  beforeAll(() => {
    lab = new PeerLab();
    oc = Netns.create("rfo");
    br = Netns.create("rfb");
    link(oc, "oc-br", "10.255.8.1/30", br, "br-oc", "10.255.8.2/30");
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
        fib: { enabled: true, table: "main", protocol: 201 },
      },
      ["--metrics-address", `127.0.0.1:${PORT}`],
    );
    bird = lab.startBird(br, "bird", birdConf);
  });

  afterAll(() => {
    lab?.cleanup();
    oc?.destroy();
    br?.destroy();
  });

  /** `ocelot routes PREFIX` run inside the bgpd's namespace (its kernel), as a user would. */
  const routes = (prefix: string, json: boolean) => {
    const [cmd, args] = oc.wrap(
      process.execPath,
      `${REPO_ROOT}/bin/ocelot`,
      "routes",
      prefix,
      "--socket",
      ocelot.socket,
      ...(json ? ["--json"] : []),
    );
    return runSync(cmd, args, { encoding: "utf8", timeout: HANG_MS });
  };
  const routeJson = (prefix: string): { status: number | null; out: RouteJson } => {
    const r = routes(prefix, true);
    return { status: r.status, out: JSON.parse(r.stdout) as RouteJson };
  };

  it("the refused route: not in the kernel, with the kernel's error; the other installed", async () => {
    await ocelot.established("10.255.8.2");
    // BIRD sends both, the bad one with the far next hop (read from BIRD itself).
    expect(bird.cmd("show", "route", "export", "oc", "count")).toMatch(/\b2 of \d+ routes/);
    await waitFor(
      `${GOOD} in the kernel and ${BAD} refused`,
      () =>
        kernelRoutes(oc, 4).some((r) => r.dst === GOOD && r.protocol === "201") &&
        routeJson(BAD).out.kernel.state === "failed",
      20_000,
      200,
    );
    const good = routeJson(GOOD);
    expect(good.status).toBe(0);
    expect(good.out.kernel).toMatchObject({ state: "installed", found: ["10.255.8.2"] });
    expect(good.out.kernel.error).toBeUndefined();

    const bad = routeJson(BAD);
    expect(bad.status).toBe(1);
    expect(bad.out.route?.nexthops).toEqual([FAR_GW]);
    expect(bad.out.kernel).toMatchObject({
      state: "failed",
      expected: [FAR_GW],
      found: [],
      error: { code: "ENETUNREACH", errno: 101, reason: "Network is unreachable", op: "set" },
    });
    expect(bad.out.route?.fibError?.code).toBe("ENETUNREACH");
    // The kernel holds nothing for it, read without Ocelot.
    expect(kernelRoutes(oc, 4).some((r) => r.dst === BAD)).toBe(false);

    const text = routes(BAD, false);
    expect(text.status).toBe(1);
    expect(text.stdout).toMatch(
      /^Kernel: NOT IN KERNEL: ENETUNREACH: Network is unreachable.*\(refused at \d{4}-.*\); expected via 10\.77\.0\.1$/m,
    );

    const metrics = httpGetIn(oc, PORT, "/metrics")[1];
    expect(
      metricSample(
        metrics,
        'ocelot_fib_route_errors_by_errno_total{fib="bgp",op="set",errno="ENETUNREACH"}',
      ),
    ).toBeGreaterThanOrEqual(1);
    expect(
      metricSample(metrics, 'ocelot_fib_route_errors_total{fib="bgp"}'),
    ).toBeGreaterThanOrEqual(1);
  });

  it("once the gateway's subnet is connected the FIB installs it and the error is gone", async () => {
    // A second subnet on the link to BIRD (no dummy links on every kernel): the gateway is
    // on a connected subnet now, and the address event makes the FIB try again.
    oc.ip("addr", "add", "10.77.0.2/24", "dev", "oc-br");
    await waitFor(
      `${BAD} via ${FAR_GW} in the kernel`,
      () => kernelRoutes(oc, 4).some((r) => r.dst === BAD && r.gateway === FAR_GW),
      20_000,
      200,
    );
    const bad = routeJson(BAD);
    expect(bad.status).toBe(0);
    expect(bad.out.kernel).toMatchObject({ state: "installed", found: [FAR_GW] });
    expect(bad.out.kernel.error).toBeUndefined();
    expect(bad.out.route?.fibError).toBeUndefined();
  });
});
