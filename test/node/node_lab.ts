// A node daemon test's lab: an embedded store (SQLite in a temp dir) written through the
// ResourceClient, the nodes (`ocelot node run`, test/node/harness.ts) and their peers (BIRD, FRR,
// test/helpers/peers.ts) in namespaces of this run, and the removal of all of it in one call,
// also after a set-up that failed half-way.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ResourceClient } from "../../src/api/client.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { link, Netns } from "../helpers/netns.js";
import { type BirdPeer, PeerLab } from "../helpers/peers.js";
import { bridgedFabric, type MeshNode, startMeshNodes, stopMeshNodes } from "./harness.js";

export const V3 = "projectcalico.org/v3";

/**
 * A BIRD 2 iBGP peer of a node (AS 64512, the node's) on a directly connected link: passive,
 * importing all the node sends, exporting nothing; hold 9 s, error wait 1-2 s.
 */
export function ibgpBirdConf(birdIp: string, nodeIp: string, protocol = "inode"): string {
  return `
log "@DIR@/bird.log" all;
router id ${birdIp};
protocol device { }
protocol bgp ${protocol} {
  local ${birdIp} as 64512;
  neighbor ${nodeIp} as 64512;
  direct;
  passive on;
  hold time 9;
  error wait time 1, 2;
  ipv4 { gateway direct; import all; export none; };
}
`;
}

export class NodeLab {
  readonly dir: string;
  readonly store: SqliteDatastore;
  readonly client: ResourceClient;
  readonly peers = new PeerLab();
  readonly nodes: MeshNode[] = [];
  /** Namespaces other than the nodes' (peers, routers), removed after the peers stop. */
  private readonly others: Netns[] = [];

  /** A temp dir named `ocelot-<name>-…` holding store.db and the nodes' status sockets. */
  constructor(name: string) {
    this.dir = mkdtempSync(join(tmpdir(), `ocelot-${name}-`));
    this.store = new SqliteDatastore(join(this.dir, "store.db"));
    this.client = new ResourceClient(this.store);
  }

  /** The store's URL for `--datastore`. */
  get url(): string {
    return `file:${join(this.dir, "store.db")}`;
  }

  /** Applies a projectcalico.org/v3 resource. */
  apply(kind: string, name: string, spec: object): Promise<unknown> {
    return this.client.write("apply", { apiVersion: V3, kind, metadata: { name }, spec });
  }

  /** A node: its namespace (short name ns), to be started by start(). */
  node(ns: string, name: string, ip: string): Netns {
    const n = { name, ns: Netns.create(ns), ip };
    this.nodes.push(n);
    return n.ns;
  }

  /** A namespace for a peer or a router, removed by close(). */
  netns(short: string): Netns {
    const ns = Netns.create(short);
    this.others.push(ns);
    return ns;
  }

  /**
   * A BIRD 2 in a namespace of its own (short name `short`, removed by close()), on a /24 link
   * from the node's interface `iface` (nodeIp) to its eth0 (birdIp), started with conf.
   */
  birdOnLink(
    node: Netns,
    iface: string,
    nodeIp: string,
    short: string,
    birdIp: string,
    name: string,
    conf: string,
  ): BirdPeer {
    const ns = this.netns(short);
    link(node, iface, `${nodeIp}/24`, ns, "eth0", `${birdIp}/24`);
    return this.peers.startBird(ns, name, conf);
  }

  /** harness.ts bridgedFabric: its nodes join the lab; returns its ToR namespace. */
  fabric(prefix: string, torIp: string, nodeIps: readonly string[]): Netns {
    const f = bridgedFabric(prefix, torIp, nodeIps);
    this.nodes.push(...f.nodes);
    this.others.push(f.tor);
    return f.tor;
  }

  /** The status socket of a node, by index or name (startMeshNodes names it after the node). */
  socket(node: number | string = 0): string {
    return join(this.dir, `${typeof node === "string" ? node : this.nodes[node]?.name}.sock`);
  }

  /** Starts every node's daemon on the store, extraArgs(node) after the common arguments. */
  start(extraArgs?: (n: MeshNode) => string[]): Promise<void> {
    return startMeshNodes(this.nodes, this.url, this.dir, extraArgs);
  }

  /** Stops the daemons and peers, removes the namespaces, closes the store, removes the dir. */
  async close(): Promise<void> {
    try {
      await stopMeshNodes(this.nodes);
    } finally {
      this.peers.cleanup();
      for (const ns of this.others) ns.destroy();
      await this.store.close();
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
