// The node daemon SIGKILLed mid-convergence with BGP on (issue 17, crash safety): the real
// `ocelot node run` in a namespace on the embedded store, with three blocks of its own and a
// BGPPeer to BIRD 2 (graceful restart on) in a second namespace, which announces two prefixes.
// After a clean start the reference is taken: the node's kernel routes (protocol 201 from BIRD,
// 202 for its blocks), and the routes BIRD learned from the node. Then, again and again: our
// routes are flushed, the daemon started and SIGKILLed at a random point 0-1.5 s after it
// registered (while it programs the kernel and the session comes up), and started once more;
// that start must converge to exactly the reference kernel state, and BIRD's routes from the
// node must equal those before (nothing stale kept, nothing missing). 8 kills per suite run, 20
// under OCELOT_SOAK=1 (`npm run test:soak`); OCELOT_KILLS=n sets the count.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResourceClient } from "../../src/api/client.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { IpamStore } from "../../src/ipam/store.js";
import { HANG_MS } from "../helpers/limits.js";
import { link, Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { type BirdPeer, PeerLab, peersUnavailableReason } from "../helpers/peers.js";
import { BIN, daemonTestsUnavailable, peerStatus, routes } from "../node/harness.js";
import { spawnLogged, stopHard } from "./kill.js";

const KILLS = Number(process.env.OCELOT_KILLS ?? (process.env.OCELOT_SOAK === "1" ? 20 : 8));
const NODE = "kill-bgp-node";
const NODE_IP = "10.97.0.1";
const BIRD_IP = "10.97.0.2";
const BIRD_AS = 65097;
const ANNOUNCED = ["10.97.1.0/24", "10.97.2.0/24"];
const V3 = "projectcalico.org/v3";
const skip = skipWithReason(
  "node daemon with BGP killed mid-convergence",
  daemonTestsUnavailable() ?? peersUnavailableReason(["bird"]),
);

const birdConf = `
log "@DIR@/bird.log" { warning, error, auth, fatal, bug };
router id ${BIRD_IP};
protocol device { }
protocol static s4 {
  ipv4;
${ANNOUNCED.map((p) => `  route ${p} blackhole;`).join("\n")}
}
protocol bgp node {
  local ${BIRD_IP} as ${BIRD_AS};
  neighbor ${NODE_IP} as 64512;
  passive on;
  hold time 9;
  error wait time 1, 2;
  graceful restart on;
  ipv4 { import all; export where source = RTS_STATIC; };
}
`;

interface Peer {
  address: string;
  state: string;
}

describe.skipIf(skip)("ocelot node run with BGP SIGKILLed mid-convergence", () => {
  let dir: string;
  let store: SqliteDatastore;
  let lab: PeerLab;
  let bird: BirdPeer;
  let ns: Netns;
  let birdNs: Netns;
  let current: ChildProcess | undefined;
  const socket = () => join(dir, "node.sock");

  const start = () => {
    // `ip netns exec` execs in place: the PID is the daemon's own.
    const s = spawnLogged("ip", [
      "netns",
      "exec",
      ns.name,
      join(BIN, "ocelot"),
      "node",
      "run",
      "--nodename",
      NODE,
      "--ip",
      `${NODE_IP}/24`,
      "--datastore",
      `file:${join(dir, "store.db")}`,
      "--status-socket",
      socket(),
    ]);
    current = s.p;
    return s;
  };
  const kernel = () => ({
    learned: routes(ns, "201")
      .map((r) => `${r.dst} via ${r.gateway ?? ""}`)
      .sort(),
    blocks: routes(ns, "202")
      .map((r) => `${r.type ?? "unicast"} ${r.dst}`)
      .sort(),
  });
  /** The prefixes BIRD holds from the node (best or not), sorted. */
  const birdLearned = () =>
    [...bird.cmd("show", "route", "protocol", "node").matchAll(/^(\d+\.\d+\.\d+\.\d+\/\d+)/gm)]
      .map((m) => m[1] as string)
      .sort();
  const established = () => {
    try {
      return (
        peerStatus<Peer>(socket()).find((x) => x.address === BIRD_IP)?.state === "Established" &&
        bird.state("node") === "Established"
      );
    } catch {
      return false;
    }
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-nodekillbgp-"));
    store = new SqliteDatastore(join(dir, "store.db"));
    const client = new ResourceClient(store);
    await client.write("apply", {
      apiVersion: V3,
      kind: "IPPool",
      metadata: { name: "pods" },
      spec: { cidr: "10.246.0.0/22", blockSize: 26, natOutgoing: true },
    });
    await client.write("apply", {
      apiVersion: V3,
      kind: "BGPPeer",
      metadata: { name: "tor" },
      spec: { peerIP: BIRD_IP, asNumber: BIRD_AS, keepaliveTime: "3s" },
    });
    const ipam = new IpamStore(store, { emptyBlockGraceMs: 0 });
    for (let b = 0; b < 3; b++)
      await ipam.autoAssign({ handleId: `kb-${b}`, node: NODE, num4: b < 2 ? 64 : 1, num6: 0 });
    lab = new PeerLab();
    ns = Netns.create("nkb");
    birdNs = Netns.create("nkt");
    link(ns, "eth0", `${NODE_IP}/24`, birdNs, "eth0", `${BIRD_IP}/24`);
    bird = lab.startBird(birdNs, "bird", birdConf);
  });

  afterAll(async () => {
    if (current) await stopHard(current);
    lab?.cleanup();
    ns?.destroy();
    birdNs?.destroy();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`${KILLS} SIGKILLs during convergence: each next start reaches the reference kernel state and BIRD's routes`, async () => {
    const first = start();
    const converged = (
      what: string,
      log: () => string,
      want?: ReturnType<typeof kernel>,
      wantBird?: string[],
    ) =>
      waitFor(
        what,
        () => {
          if (!established()) return false;
          const k = kernel();
          if (want)
            return (
              JSON.stringify(k) === JSON.stringify(want) &&
              JSON.stringify(birdLearned()) === JSON.stringify(wantBird)
            );
          return (
            k.learned.length === ANNOUNCED.length &&
            k.blocks.length === 3 &&
            birdLearned().length === 3
          );
        },
        60_000,
        200,
      ).catch((e) => {
        throw new Error(
          `${(e as Error).message}: kernel ${JSON.stringify(kernel())}, BIRD ${JSON.stringify(birdLearned())}\n${log().slice(-3000)}`,
        );
      });
    await converged("the first start converged", first.log);
    const reference = kernel();
    const birdReference = birdLearned();
    expect(reference.learned.map((r) => r.split(" ")[0])).toEqual(ANNOUNCED);
    expect(reference.blocks.every((b) => b.startsWith("blackhole"))).toBe(true);
    await stopHard(first.p);
    let seed = 0x4b47;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const killedAt: number[] = [];
    /** How many of the reference's routes were in the kernel when each kill came. */
    const doneAtKill: number[] = [];
    const t0 = performance.now();
    for (let k = 0; k < KILLS; k++) {
      // Flush what it made, so each start has the whole convergence to do, then cut it short.
      ns.exec("ip", "route", "flush", "proto", "201");
      ns.exec("ip", "route", "flush", "proto", "202");
      const s = start();
      const ts = Date.now();
      await waitFor(
        "the daemon to begin",
        () => s.log().includes("Node registered") || s.log().includes("Node already registered"),
        HANG_MS,
        5,
      );
      await new Promise((r) => setTimeout(r, Math.floor(random() * 1500)));
      const atKill = kernel();
      await stopHard(s.p);
      killedAt.push(Date.now() - ts);
      doneAtKill.push(atKill.learned.length + atKill.blocks.length);
      const again = start();
      await converged(
        `converged after kill ${k + 1} (at ${killedAt.at(-1)} ms)`,
        again.log,
        reference,
        birdReference,
      );
      await stopHard(again.p);
    }
    console.log(
      `node daemon with BGP kills: ${KILLS} in ${Math.round((performance.now() - t0) / 1000)} s, at ${killedAt.join(", ")} ms after start, with ${doneAtKill.join(", ")} of the ${reference.learned.length + reference.blocks.length} routes in place; each next start converged to the reference (${reference.learned.length} learned routes, ${reference.blocks.length} blocks) and BIRD held the same ${birdReference.length} routes`,
    );
  });
});
