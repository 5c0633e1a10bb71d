// The Prometheus text format (0.0.4) of src/lib/metrics.ts, the daemons' metric families of
// src/lib/daemon_metrics.ts and src/bgp/metrics.ts from a status snapshot, and the --metrics-address parser and HTTP
// endpoint of src/lib/health_server.ts on the loopback (a port found free just before).
import * as net from "node:net";
import { describe, expect, it } from "vitest";
import { addBfdMetrics, addBgpMetrics } from "../../src/bgp/metrics.js";
import type { PeerStatus, StatusSnapshot } from "../../src/bgp/status.js";
import { addAgentMetrics, addFibMetrics, kernelFibCounters } from "../../src/lib/daemon_metrics.js";
import { parseListenAddress, serveHealth } from "../../src/lib/health_server.js";
import {
  escapeHelp,
  escapeLabelValue,
  formatValue,
  MetricsRegistry,
  renderMetrics,
} from "../../src/lib/metrics.js";

describe("renderMetrics()", () => {
  it("renders HELP and TYPE lines, then samples with labels in order", () => {
    const text = new MetricsRegistry()
      .counter("ocelot_x_total", "Things done.", [
        { labels: { peer: "10.0.0.1", asn: 64512 }, value: 3 },
        { labels: { peer: "10.0.0.2", asn: 64513 }, value: 0 },
      ])
      .gauge("ocelot_y", "A level.", 1.5)
      .render();
    expect(text).toBe(
      [
        "# HELP ocelot_x_total Things done.",
        "# TYPE ocelot_x_total counter",
        'ocelot_x_total{peer="10.0.0.1",asn="64512"} 3',
        'ocelot_x_total{peer="10.0.0.2",asn="64513"} 0',
        "# HELP ocelot_y A level.",
        "# TYPE ocelot_y gauge",
        "ocelot_y 1.5",
        "",
      ].join("\n"),
    );
  });

  it("escapes label values (backslash, quote, newline) and HELP (backslash, newline)", () => {
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    expect(escapeHelp('x\\y\nz "q"')).toBe('x\\\\y\\nz "q"');
    const text = renderMetrics([
      {
        name: "m",
        help: "two\nlines",
        type: "gauge",
        samples: [{ labels: { v: 'say "hi"\\' }, value: 1 }],
      },
    ]);
    expect(text).toContain("# HELP m two\\nlines\n");
    expect(text).toContain('m{v="say \\"hi\\"\\\\"} 1\n');
    // One line per sample: an escaped newline never breaks a line.
    expect(text.trimEnd().split("\n")).toHaveLength(3);
  });

  it("formats NaN and infinities as Go's ParseFloat reads them", () => {
    expect(formatValue(Number.NaN)).toBe("NaN");
    expect(formatValue(Number.POSITIVE_INFINITY)).toBe("+Inf");
    expect(formatValue(Number.NEGATIVE_INFINITY)).toBe("-Inf");
    expect(formatValue(-2)).toBe("-2");
    expect(formatValue(1e21)).toBe("1e+21");
  });

  it("a family without samples keeps its HELP and TYPE; no families render nothing", () => {
    expect(renderMetrics([{ name: "e", help: "h", type: "counter", samples: [] }])).toBe(
      "# HELP e h\n# TYPE e counter\n",
    );
    expect(renderMetrics([])).toBe("");
  });

  it("refuses, naming it, a bad metric or label name, a duplicate, a negative counter", () => {
    const g = (name: string, labels?: Record<string, string>) => ({
      name,
      help: "h",
      type: "gauge" as const,
      samples: [{ ...(labels ? { labels } : {}), value: 1 }],
    });
    expect(() => renderMetrics([g("9bad")])).toThrow(/"9bad" is not a valid Prometheus metric/);
    expect(() => renderMetrics([g("ok-no")])).toThrow(/"ok-no"/);
    expect(() => renderMetrics([g("m", { "a-b": "x" })])).toThrow(/label name "a-b"/);
    expect(() => renderMetrics([g("m", { __name__: "x" })])).toThrow(/label name "__name__"/);
    expect(() => renderMetrics([g("m"), g("m")])).toThrow(/Metric m is defined twice/);
    expect(() =>
      renderMetrics([{ name: "c_total", help: "h", type: "counter", samples: [{ value: -1 }] }]),
    ).toThrow(/Counter c_total has a negative value -1/);
    expect(() =>
      renderMetrics([
        {
          name: "d",
          help: "h",
          type: "gauge",
          samples: [
            { labels: { a: "1" }, value: 1 },
            { labels: { a: "1" }, value: 2 },
          ],
        },
      ]),
    ).toThrow(/d\{a="1"\} has two samples/);
  });
});

function peer(over: Partial<PeerStatus>): PeerStatus {
  return {
    address: "10.0.0.2",
    asn: 65010,
    localAsn: 64512,
    type: "external",
    state: "Established",
    uptimeSeconds: 42,
    negotiated: {
      holdTime: 90,
      keepaliveTime: 30,
      families: ["ipv6-unicast", "ipv4-unicast"],
      fourOctetAs: true,
      routeRefresh: true,
      enhancedRouteRefresh: false,
      gracefulRestart: false,
    },
    prefixes: { received: 5, accepted: 4, advertised: 2 },
    messages: { in: 10, out: 8, updatesIn: 3 },
    sendQueueBytes: 0,
    establishedTransitions: 1,
    lastError: null,
    ...over,
  };
}

const snapshot: StatusSnapshot = {
  routerId: "10.0.0.1",
  asn: 64512,
  listen: null,
  uptimeSeconds: 100,
  peers: [
    peer({}),
    peer({
      address: "10.0.0.3",
      asn: 64512,
      state: "Active",
      uptimeSeconds: null,
      negotiated: null,
    }),
  ],
  locRib: { ipv4: 7, ipv6: 1 },
  fib: { enabled: true, installed: 6, pending: 0, errors: 0 },
  memory: { rssMiB: 1, heapUsedMiB: 1, arrayBuffersMiB: 0, ribTypedMiB: 0 },
};

/** The value of one series in exposition text, or undefined. */
function value(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("addBfdMetrics()", () => {
  it("one state series per RFC 5880 state, up, detection time and packet counters by reason", () => {
    const reg = new MetricsRegistry();
    const session = {
      peer: "10.0.0.2",
      multihop: false,
      state: "Up" as const,
      remoteState: "Up" as const,
      diag: "None",
      localDiscr: 1,
      remoteDiscr: 2,
      txIntervalMs: 300,
      detectionTimeMs: 900,
      received: 10,
      sent: 11,
    };
    addBfdMetrics(reg, [session, { ...session, peer: "10.0.0.3", multihop: true, state: "Down" }], {
      received: 10,
      sent: 11,
      discarded: { BadVersion: 2, NoSession: 1 },
    });
    const t = reg.render();
    const a = 'peer="10.0.0.2",mode="single-hop"';
    const b = 'peer="10.0.0.3",mode="multihop"';
    expect(value(t, `ocelot_bfd_session_state{${a},state="Up"}`)).toBe(1);
    expect(value(t, `ocelot_bfd_session_state{${a},state="Down"}`)).toBe(0);
    expect(value(t, `ocelot_bfd_session_state{${b},state="Down"}`)).toBe(1);
    expect(value(t, `ocelot_bfd_session_up{${a}}`)).toBe(1);
    expect(value(t, `ocelot_bfd_session_up{${b}}`)).toBe(0);
    expect(value(t, `ocelot_bfd_session_detection_time_seconds{${a}}`)).toBe(0.9);
    expect(value(t, "ocelot_bfd_packets_sent_total")).toBe(11);
    expect(value(t, 'ocelot_bfd_packets_discarded_total{reason="BadVersion"}')).toBe(2);
    expect(value(t, 'ocelot_bfd_packets_discarded_total{reason="NoSession"}')).toBe(1);
  });
});

describe("addBgpMetrics()", () => {
  const reg = new MetricsRegistry();
  addBgpMetrics(reg, snapshot, { configuredFamilies: () => ["ipv4-unicast"] });
  const text = reg.render();
  const up = 'peer="10.0.0.2",asn="65010",afi="ipv4-unicast,ipv6-unicast"';
  const down = 'peer="10.0.0.3",asn="64512",afi="ipv4-unicast"';

  it("one state series per FSM state, 1 for the state the session is in", () => {
    expect(value(text, `ocelot_bgp_peer_state{${up},state="Established"}`)).toBe(1);
    expect(value(text, `ocelot_bgp_peer_state{${up},state="Idle"}`)).toBe(0);
    expect(value(text, `ocelot_bgp_peer_state{${down},state="Active"}`)).toBe(1);
    expect(value(text, `ocelot_bgp_peer_state{${down},state="Established"}`)).toBe(0);
    expect(text.match(/^ocelot_bgp_peer_state\{/gm)).toHaveLength(12);
    expect(value(text, `ocelot_bgp_peer_up{${up}}`)).toBe(1);
    expect(value(text, `ocelot_bgp_peer_up{${down}}`)).toBe(0);
  });

  it("counters, prefixes, uptime and Loc-RIB per family", () => {
    expect(value(text, `ocelot_bgp_peer_prefixes_received{${up}}`)).toBe(5);
    expect(value(text, `ocelot_bgp_peer_prefixes_accepted{${up}}`)).toBe(4);
    expect(value(text, `ocelot_bgp_peer_prefixes_advertised{${up}}`)).toBe(2);
    expect(value(text, `ocelot_bgp_peer_uptime_seconds{${up}}`)).toBe(42);
    expect(value(text, `ocelot_bgp_peer_uptime_seconds{${down}}`)).toBe(0);
    expect(value(text, `ocelot_bgp_peer_messages_received_total{${up}}`)).toBe(10);
    expect(value(text, `ocelot_bgp_peer_messages_sent_total{${up}}`)).toBe(8);
    expect(value(text, `ocelot_bgp_peer_updates_received_total{${up}}`)).toBe(3);
    expect(value(text, `ocelot_bgp_peer_established_transitions_total{${up}}`)).toBe(1);
    expect(value(text, 'ocelot_bgp_loc_rib_routes{afi="ipv4"}')).toBe(7);
    expect(value(text, 'ocelot_bgp_loc_rib_routes{afi="ipv6"}')).toBe(1);
    expect(value(text, "ocelot_bgp_speaker_running")).toBe(1);
    expect(text).toContain("# TYPE ocelot_bgp_peer_established_transitions_total counter\n");
    expect(text).toContain("# TYPE ocelot_bgp_peer_state gauge\n");
  });

  it("no speaker: running 0 and the families without samples", () => {
    const r = new MetricsRegistry();
    addBgpMetrics(r, undefined);
    const t = r.render();
    expect(value(t, "ocelot_bgp_speaker_running")).toBe(0);
    expect(t).toContain("# TYPE ocelot_bgp_peer_state gauge\n");
    expect(t).not.toMatch(/^ocelot_bgp_peer_state\{/m);
  });
});

describe("addFibMetrics() and addAgentMetrics()", () => {
  it("one series per FIB; a KernelFib's pending is desired minus installed", () => {
    const k = kernelFibCounters({
      desired: 10,
      installed: 7,
      failures: 2,
      resyncs: 3,
      overflows: 1,
      restored: 4,
      swept: 5,
    });
    expect(k).toEqual({
      installed: 7,
      pending: 3,
      errors: 2,
      resyncs: 3,
      overflows: 1,
      restored: 4,
      swept: 5,
    });
    const reg = new MetricsRegistry();
    addFibMetrics(reg, [
      ["bgp", { installed: 1, pending: 0, errors: 0, resyncs: 0, overflows: 0 }],
      ["agent", k],
    ]);
    const t = reg.render();
    expect(value(t, 'ocelot_fib_routes_installed{fib="agent"}')).toBe(7);
    expect(value(t, 'ocelot_fib_routes_pending{fib="agent"}')).toBe(3);
    expect(value(t, 'ocelot_fib_route_errors_total{fib="agent"}')).toBe(2);
    expect(value(t, 'ocelot_fib_resyncs_total{fib="agent"}')).toBe(3);
    expect(value(t, 'ocelot_fib_netlink_overflows_total{fib="agent"}')).toBe(1);
    expect(value(t, 'ocelot_fib_routes_restored_total{fib="agent"}')).toBe(4);
    expect(value(t, 'ocelot_fib_routes_swept_total{fib="agent"}')).toBe(5);
    expect(value(t, 'ocelot_fib_routes_installed{fib="bgp"}')).toBe(1);
    expect(value(t, 'ocelot_fib_routes_swept_total{fib="bgp"}')).toBe(0);
  });

  it("a KernelFib's refusals by operation and errno name", () => {
    const k = kernelFibCounters({
      desired: 3,
      installed: 1,
      failures: 3,
      resyncs: 0,
      overflows: 0,
      errorsByErrno: [
        { op: "set", errno: "ENETUNREACH", count: 2 },
        { op: "remove", errno: "EPERM", count: 1 },
      ],
    });
    const reg = new MetricsRegistry();
    addFibMetrics(reg, [
      ["bgp", k],
      ["agent", { installed: 0, pending: 0, errors: 0, resyncs: 0, overflows: 0 }],
    ]);
    const t = reg.render();
    expect(t).toContain("# TYPE ocelot_fib_route_errors_by_errno_total counter\n");
    expect(
      value(t, 'ocelot_fib_route_errors_by_errno_total{fib="bgp",op="set",errno="ENETUNREACH"}'),
    ).toBe(2);
    expect(
      value(t, 'ocelot_fib_route_errors_by_errno_total{fib="bgp",op="remove",errno="EPERM"}'),
    ).toBe(1);
    expect(t).not.toMatch(/ocelot_fib_route_errors_by_errno_total\{fib="agent"/);
  });

  it("agent counters per area, durations in seconds", () => {
    const reg = new MetricsRegistry();
    addAgentMetrics(reg, {
      convergences: { agent: 4, bgp: 3 },
      failures: { agent: 1, bgp: 0 },
      lastDurationMs: 250,
      lastAt: 1_700_000_000_500,
      workloadEndpoints: 2,
      policies: 1,
      warnings: 0,
      watchResyncs: 5,
    });
    const t = reg.render();
    expect(value(t, 'ocelot_agent_convergences_total{area="agent"}')).toBe(4);
    expect(value(t, 'ocelot_agent_convergence_failures_total{area="agent"}')).toBe(1);
    expect(value(t, "ocelot_agent_last_convergence_duration_seconds")).toBe(0.25);
    expect(value(t, "ocelot_agent_last_convergence_timestamp_seconds")).toBe(1_700_000_000.5);
    expect(value(t, "ocelot_agent_workload_endpoints")).toBe(2);
    expect(value(t, "ocelot_agent_active_policies")).toBe(1);
    expect(value(t, "ocelot_datastore_watch_resyncs_total")).toBe(5);
  });
});

describe("parseListenAddress()", () => {
  it("reads IPv4, [IPv6] and localhost with a port", () => {
    expect(parseListenAddress("127.0.0.1:9091")).toEqual({ host: "127.0.0.1", port: 9091 });
    expect(parseListenAddress("[::1]:9091")).toEqual({ host: "::1", port: 9091 });
    expect(parseListenAddress("localhost:80")).toEqual({ host: "localhost", port: 80 });
  });

  it("refuses, naming the flag and the value, what is not host:port", () => {
    for (const bad of [
      "9091",
      "127.0.0.1",
      "127.0.0.1:0",
      "127.0.0.1:70000",
      "::1:9091",
      "[10.0.0.1]:1",
      "example.com:9091",
      "1.2.3:9",
    ])
      expect(() => parseListenAddress(bad), bad).toThrow(
        new RegExp(`^--metrics-address: "${bad.replace(/[.[\]]/g, "\\$&")}"`),
      );
  });
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

describe("serveHealth()", () => {
  it("serves /metrics, /livez, /readyz (503 with the reason, then 200) and 404", async () => {
    let ready = false;
    const port = await freePort();
    const h = await serveHealth(
      { host: "127.0.0.1", port },
      {
        metrics: () => new MetricsRegistry().gauge("ocelot_t", "t", 1).render(),
        ready: () => (ready ? { ok: true } : { ok: false, reason: "not converged" }),
      },
    );
    try {
      const base = `http://127.0.0.1:${port}`;
      const m = await fetch(`${base}/metrics`);
      expect(m.status).toBe(200);
      expect(m.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
      expect(await m.text()).toContain("ocelot_t 1\n");
      const live = await fetch(`${base}/livez`);
      expect(live.status).toBe(200);
      const r1 = await fetch(`${base}/readyz`);
      expect(r1.status).toBe(503);
      expect(await r1.text()).toBe("not ok: not converged\n");
      ready = true;
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      expect((await fetch(`${base}/nope`)).status).toBe(404);
      const post = await fetch(`${base}/metrics`, { method: "POST" });
      expect(post.status).toBe(405);
      expect(post.headers.get("allow")).toBe("GET, HEAD");
    } finally {
      await h.close();
    }
  });

  it("a port in use is refused by name, and nothing is left listening", async () => {
    const port = await freePort();
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(port, "127.0.0.1", () => r()));
    try {
      await expect(
        serveHealth(
          { host: "127.0.0.1", port },
          { metrics: () => "", ready: () => ({ ok: true }) },
        ),
      ).rejects.toThrow(
        `--metrics-address 127.0.0.1:${port}: the port is in use by another process (EADDRINUSE)`,
      );
    } finally {
      await new Promise<void>((r) => taken.close(() => r()));
    }
  });
});
