// bench/watch_fanout.ts in a small form: 50 simulated nodes (the node daemon's datastore client
// and watch set) against a real etcd 3.4, first directly, then through one `etcd grpc-proxy`,
// then through two: every node sees each change (a new IPPool, a BGPPeer, a Node, a block
// affinity), and through proxies the server holds fewer watch streams and watchers (each proxy
// coalesces the prefixes all nodes share). Limits are for hangs only.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type EtcdProxy,
  runFanout,
  startGrpcProxy,
  watchGauges,
} from "../../bench/watch_fanout.js";
import { type EtcdServer, etcdUnavailableReason, startEtcd } from "../helpers/etcd.js";
import { HANG_MS } from "../helpers/limits.js";
import { skipWithReason } from "../helpers/netns.js";

const N = 50;
const skip = skipWithReason("watch fan-out through etcd grpc-proxy", etcdUnavailableReason());

describe.skipIf(skip)(
  "watch fan-out: 50 simulated nodes, direct and through etcd grpc-proxy",
  () => {
    let server: EtcdServer;
    const proxies: EtcdProxy[] = [];
    beforeAll(async () => {
      server = await startEtcd();
    }, HANG_MS);
    afterAll(async () => {
      for (const p of proxies) await p.stop();
      await server?.stop();
    }, HANG_MS);

    it(
      "all converge every way; proxies leave the server fewer streams and watchers",
      async () => {
        const direct = await runFanout(server, [server.endpoint], "direct", N, 4, HANG_MS);
        expect(direct.started).toBe(N);
        expect(direct.changes).toBe(4);
        // Each node watches at least ten prefixes, each a watch on the server.
        expect(direct.watchers).toBeGreaterThanOrEqual(10 * N);
        // All of a node's watches on one gRPC stream (etcd_watch_mux.ts): one stream per node.
        expect(direct.streams).toBeGreaterThanOrEqual(N);
        expect(direct.streams).toBeLessThanOrEqual(N + 1);
        // The nodes are gone again before the proxy row (nothing left behind on the server).
        const idle = await waitIdle(server);
        expect(idle.watchers).toBeLessThan(N);

        proxies.push(await startGrpcProxy(server.endpoint, server.dataDir));
        const via = await runFanout(
          server,
          [proxies[0]?.endpoint as string],
          "proxy",
          N,
          4,
          HANG_MS,
        );
        expect(via.started).toBe(N);
        expect(via.changes).toBe(4);
        // One upstream watcher per shared prefix: every watched prefix is shared by all nodes
        // (block affinities too, since the overlay routes every node's blocks), so the server's
        // watchers through the proxy do not grow with N.
        expect(via.watchers).toBeLessThan(direct.watchers / 4);
        expect(via.streams).toBeLessThan(direct.streams / 4);
        expect(via.watchers).toBeLessThan(N);
        expect((await waitIdle(server)).watchers).toBeLessThan(N);

        // Two proxies, half the nodes each: each holds its own upstream watchers.
        proxies.push(await startGrpcProxy(server.endpoint, server.dataDir));
        const two = await runFanout(
          server,
          proxies.map((p) => p.endpoint),
          "proxy2",
          N,
          4,
          HANG_MS,
        );
        expect(two.started).toBe(N);
        expect(two.watchers).toBeLessThan(N);
        expect(two.watchers).toBeGreaterThan(via.watchers);
        expect(two.streams).toBeLessThan(direct.streams / 4);
      },
      6 * HANG_MS,
    );
  },
);

/** The server's gauges once the last row's watches are cancelled (bounded wait). */
async function waitIdle(server: EtcdServer): Promise<{ streams: number; watchers: number }> {
  let g = await watchGauges(server);
  for (let i = 0; i < 120 && g.watchers >= N; i++) {
    await new Promise((r) => setTimeout(r, 500));
    g = await watchGauges(server);
  }
  return g;
}
