// The node daemon's CNI hand-off server (src/node/cni_server.ts) under concurrent calls, driven
// through its real unix socket with real `ocelot-ipam` requests on an in-memory datastore that
// can be made to stall for one container: a stalled call holds back no other container's call,
// calls for one container keep their order (an ADD and the DEL after it), no more than
// maxConcurrent run at once, and timers run between a call's datastore operations.
import { mkdtempSync, rmSync, statSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { decodeAnswer, encodeRequest } from "../../src/cni/handoff.js";
import { handleIdOf } from "../../src/cni/ipam_plugin.js";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import type { KeyValue } from "../../src/datastore/types.js";
import { IpamStore } from "../../src/ipam/store.js";
import { silentLog } from "../../src/lib/log.js";
import { KeyedLimiter, maxConcurrentFromEnv, serveCni } from "../../src/node/cni_server.js";
import { putPool } from "../ipam/helpers.js";

const NET = "k8s-pod-network";
const NODE = "node-c";

type HandoffAnswer = ReturnType<typeof decodeAnswer>;

/** A memory store whose writes naming a stalled container wait until it is released. */
class StallingDatastore extends MemoryDatastore {
  private readonly gates = new Map<string, { open: Promise<void>; release(): void }>();
  /** Store operations (reads and writes) since start. */
  ops = 0;
  /** Writes that reached a gate, by container. */
  readonly stalled = new Map<string, number>();

  stall(container: string): void {
    let release = () => {};
    const open = new Promise<void>((r) => (release = r));
    this.gates.set(container, { open, release });
  }

  release(container: string): void {
    this.gates.get(container)?.release();
    this.gates.delete(container);
  }

  private async gate(key: string, value = ""): Promise<void> {
    this.ops++;
    for (const [c, g] of this.gates) {
      if (key.includes(c) || value.includes(c)) {
        this.stalled.set(c, (this.stalled.get(c) ?? 0) + 1);
        await g.open;
      }
    }
  }

  override async get(key: string): Promise<KeyValue | undefined> {
    this.ops++;
    return super.get(key);
  }
  override async create(key: string, value: string): Promise<KeyValue> {
    await this.gate(key, value);
    return super.create(key, value);
  }
  override async update(key: string, value: string, rev?: number): Promise<KeyValue> {
    await this.gate(key, value);
    return super.update(key, value, rev);
  }
  override async updateIfAbsent(
    key: string,
    value: string,
    rev: number,
    absentKeys: readonly string[],
  ): Promise<KeyValue> {
    await this.gate(key, value);
    return super.updateIfAbsent(key, value, rev, absentKeys);
  }
  override async delete(key: string, rev?: number): Promise<boolean> {
    await this.gate(key);
    return super.delete(key, rev);
  }
}

const ownNetns = () => {
  const s = statSync("/proc/self/ns/net");
  return `${s.dev}:${s.ino}`;
};

describe("CNI hand-off server: concurrent calls", () => {
  let dir: string;
  let store: StallingDatastore;
  let server: { close(): Promise<void> } | undefined;
  let sock: string;

  const start = async (maxConcurrent?: number) => {
    server = await serveCni({
      path: sock,
      store,
      log: silentLog,
      ...(maxConcurrent ? { maxConcurrent } : {}),
    });
  };

  /** One `ocelot-ipam` call through the socket, as the shim makes it. */
  const call = (command: "ADD" | "DEL", container: string): Promise<HandoffAnswer> =>
    new Promise((resolve, reject) => {
      const c = net.connect(sock);
      // A hang limit (never a speed one): a call held back for good fails the test, not the run.
      const t = setTimeout(() => {
        c.destroy();
        reject(new Error(`${command} ${container}: no answer within 60 s`));
      }, 60_000);
      c.on("close", () => clearTimeout(t));
      const chunks: Buffer[] = [];
      c.on("data", (d: Buffer) => chunks.push(d));
      c.on("error", reject);
      c.on("end", () => {
        try {
          resolve(decodeAnswer(Buffer.concat(chunks)));
        } catch (e) {
          reject(e);
        }
      });
      c.end(
        encodeRequest({
          plugin: "ocelot-ipam",
          env: {
            CNI_COMMAND: command,
            CNI_CONTAINERID: container,
            CNI_NETNS: "/proc/self/ns/net",
            CNI_IFNAME: "eth0",
            CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=${container}`,
            OCELOT_CNI_CALLER_NETNS: ownNetns(),
          },
          stdin: JSON.stringify({
            cniVersion: "1.0.0",
            name: NET,
            type: "ocelot-cni",
            datastore: store.url,
            nodename: NODE,
            ipam: { type: "ocelot-ipam", ipv4_pools: ["pool"], assign_ipv6: false },
          }),
        }),
      );
    });

  const done = (a: HandoffAnswer) => {
    expect(a.declined, "declined").toBe(false);
    if (a.declined) return "";
    expect(a.exitCode, a.stdout).toBe(0);
    return a.stdout;
  };
  const held = async (container: string) =>
    (await new IpamStore(store).addressesOfHandle(handleIdOf(NET, container), NODE)).map(
      (a) => a.address,
    );
  /** Resolves once `p` has; records whether it has (for "still pending" checks). */
  const tracked = <T>(p: Promise<T>) => {
    const t = { settled: false, p };
    void p.then(
      () => (t.settled = true),
      () => (t.settled = true),
    );
    return t;
  };
  const until = async (what: string, ok: () => boolean) => {
    const deadline = Date.now() + 60_000;
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), `ocelot-hoc-${process.pid}-`));
    sock = join(dir, "cni.sock");
    store = new StallingDatastore(`hoc-${process.pid}-${Math.random().toString(36).slice(2)}`);
    await putPool(store, "pool", "10.81.0.0/24", { blockSize: 28 });
  });

  afterEach(async () => {
    for (const c of [...store.stalled.keys()]) store.release(c);
    await server?.close();
    server = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it("a call stalled in the datastore holds back no other container's call", async () => {
    await start();
    store.stall("ctr-slow");
    const slow = tracked(call("ADD", "ctr-slow"));
    await until("the slow call to reach the datastore", () => store.stalled.has("ctr-slow"));
    // Another container's ADD and DEL both finish while the first is still waiting.
    const fast = done(await call("ADD", "ctr-fast"));
    expect(fast).toMatch(/10\.81\.0\.\d+\/32/);
    expect(await held("ctr-fast")).toHaveLength(1);
    done(await call("DEL", "ctr-fast"));
    expect(await held("ctr-fast")).toEqual([]);
    expect(slow.settled, "the stalled call answered before its release").toBe(false);
    store.release("ctr-slow");
    expect(done(await slow.p)).toMatch(/10\.81\.0\.\d+\/32/);
    expect(await held("ctr-slow")).toHaveLength(1);
  });

  it("one container's ADD and the DEL after it run in that order, the DEL answered last", async () => {
    await start();
    store.stall("ctr-order");
    const answered: string[] = [];
    const add = call("ADD", "ctr-order").then((a) => {
      answered.push("ADD");
      return a;
    });
    await until("the ADD to reach the datastore", () => store.stalled.has("ctr-order"));
    const del = call("DEL", "ctr-order").then((a) => {
      answered.push("DEL");
      return a;
    });
    // The DEL waits behind the stalled ADD, however long (another container's call passes).
    done(await call("ADD", "ctr-other"));
    expect(answered).toEqual([]);
    store.release("ctr-order");
    done(await add);
    done(await del);
    expect(answered).toEqual(["ADD", "DEL"]);
    // Run the other way round, the DEL would find nothing and the ADD would leave an address.
    expect(await held("ctr-order")).toEqual([]);
  });

  it("no more than maxConcurrent calls run at once; a freed slot takes the next", async () => {
    await start(2);
    store.stall("ctr-a");
    store.stall("ctr-b");
    const a = tracked(call("ADD", "ctr-a"));
    const b = tracked(call("ADD", "ctr-b"));
    await until("both stalled", () => store.stalled.has("ctr-a") && store.stalled.has("ctr-b"));
    const c = tracked(call("ADD", "ctr-c"));
    // ctr-c has no slot while both are taken: it must not finish (give it ample turns).
    await new Promise((r) => setTimeout(r, 300));
    expect(c.settled, "a third call ran beside two with maxConcurrent 2").toBe(false);
    store.release("ctr-a");
    done(await a.p);
    done(await c.p);
    expect(b.settled).toBe(false);
    store.release("ctr-b");
    done(await b.p);
  });

  it("timers run between a call's datastore operations", async () => {
    await start();
    let turns = 0;
    let spinning = true;
    const spin = () => {
      turns++;
      if (spinning) setImmediate(spin);
    };
    setImmediate(spin);
    const before = store.ops;
    // The memory store answers as resolved promises: without a turn before each operation, a
    // whole call would run in one turn of the event loop (a few turns for its socket).
    for (const c of ["t1", "t2", "t3"]) done(await call("ADD", `ctr-${c}`));
    spinning = false;
    const ops = store.ops - before;
    expect(ops).toBeGreaterThan(15);
    expect(turns).toBeGreaterThanOrEqual(ops);
  });
});

describe("KeyedLimiter", () => {
  it("runs one key's tasks in order and other keys beside them, within the limit", async () => {
    const lim = new KeyedLimiter(2);
    const log: string[] = [];
    let release = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const first = lim.run("k", async () => {
      log.push("k1 start");
      await gate;
      log.push("k1 end");
    });
    const second = lim.run("k", async () => void log.push("k2"));
    await lim.run("j", async () => void log.push("j1"));
    expect(log).toEqual(["k1 start", "j1"]);
    expect(lim.load).toEqual({ running: 1, waiting: 0 });
    release();
    await Promise.all([first, second]);
    expect(log).toEqual(["k1 start", "j1", "k1 end", "k2"]);
    expect(lim.load).toEqual({ running: 0, waiting: 0 });
  });

  it("a failed task does not stop its key's next one", async () => {
    const lim = new KeyedLimiter(1);
    await expect(lim.run("k", async () => Promise.reject(new Error("boom")))).rejects.toThrow(
      "boom",
    );
    expect(await lim.run("k", async () => 7)).toBe(7);
  });

  it("the bound from the environment when set there, else the default", () => {
    expect(maxConcurrentFromEnv(1, {})).toBe(1);
    expect(maxConcurrentFromEnv(1, { OCELOT_CNI_HANDOFF_MAX_CONCURRENT: "8" })).toBe(8);
    expect(() => maxConcurrentFromEnv(1, { OCELOT_CNI_HANDOFF_MAX_CONCURRENT: "x" })).toThrow(
      /OCELOT_CNI_HANDOFF_MAX_CONCURRENT: "x"/,
    );
  });

  it("refuses a limit that is no whole number >= 1", () => {
    expect(() => new KeyedLimiter(0)).toThrow(/maxConcurrent: 0/);
  });
});
