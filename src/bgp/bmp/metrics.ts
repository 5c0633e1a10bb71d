// The BMP station connection's metric families (`--bmp-station`), the same for `ocelot bgpd`
// and `ocelot node run`: connected, connects, messages sent and dropped, dumps, and what the
// monitor produced. Pure: a client's counters in, families out. Not: the text format
// (lib/metrics.ts).
import type { MetricsRegistry } from "../../lib/metrics.js";
import type { BmpClient } from "./client.js";

export function addBmpMetrics(reg: MetricsRegistry, bmp: BmpClient): void {
  const c = bmp.counters;
  const m = bmp.monitor.counters;
  reg
    .gauge(
      "ocelot_bmp_station_connected",
      "1 while the BMP station is connected",
      bmp.connected ? 1 : 0,
    )
    .counter("ocelot_bmp_connects_total", "Connections made to the BMP station", c.connects)
    .counter(
      "ocelot_bmp_messages_sent_total",
      "BMP messages written to the station",
      c.messagesSent,
    )
    .counter(
      "ocelot_bmp_messages_dropped_total",
      "BMP messages dropped because the station did not read fast enough",
      c.dropped,
    )
    .counter("ocelot_bmp_peer_up_total", "Peer Up notifications produced", m.peerUp)
    .counter("ocelot_bmp_peer_down_total", "Peer Down notifications produced", m.peerDown)
    .counter(
      "ocelot_bmp_route_monitoring_total",
      "Route Monitoring messages produced",
      m.routeMonitoring,
    )
    .counter(
      "ocelot_bmp_dump_route_monitoring_total",
      "Route Monitoring messages of Adj-RIB-In dumps to a station that connected late (End-of-RIB included)",
      m.dumpRouteMonitoring,
    )
    .counter("ocelot_bmp_dumps_total", "Adj-RIB-In dumps written whole to a station", c.dumps);
}
