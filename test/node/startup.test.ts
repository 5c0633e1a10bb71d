import { describe, expect, it } from "vitest";
import { ResourceClient } from "../../src/api/client.js";
import { kindOf } from "../../src/api/registry.js";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import { type Datastore, UnavailableError } from "../../src/datastore/types.js";
import {
  chooseNodeAddress,
  datastoreBackoffMs,
  ensureDefaultPools,
  openDatastoreWaiting,
} from "../../src/node/startup.js";

interface Line {
  level: string;
  fields: Record<string, unknown>;
  msg: string;
}
function recorder() {
  const lines: Line[] = [];
  const at =
    (level: string) =>
    (fields: Record<string, unknown>, msg: string): void => {
      lines.push({ level, fields, msg });
    };
  const log = { info: at("info"), warn: at("warn"), error: at("error"), debug: at("debug") };
  return { lines, log: log as never };
}

const pools = async (store: Datastore) => {
  const info = kindOf("projectcalico.org/v3", "IPPool");
  if (!info) throw new Error("no IPPool kind");
  return (await new ResourceClient(store).list(info)).items;
};

describe("openDatastoreWaiting()", () => {
  it("tries again while the datastore is unavailable, saying so each time with a growing wait", async () => {
    const { lines, log } = recorder();
    let calls = 0;
    const store = new MemoryDatastore();
    const got = await openDatastoreWaiting(
      async () => {
        if (++calls < 3) throw new UnavailableError(`etcd down (try ${calls})`);
        return store;
      },
      log,
      { initialMs: 1, maxMs: 4 },
    );
    expect(got).toBe(store);
    const waits = lines.filter((l) => l.msg === "Waiting for the datastore");
    expect(waits.map((w) => w.fields)).toEqual([
      { attempt: 1, retryInMs: 1, error: "etcd down (try 1)" },
      { attempt: 2, retryInMs: 2, error: "etcd down (try 2)" },
    ]);
    expect(lines.at(-1)?.msg).toBe("Datastore reachable");
    await store.close();
  });

  it("ends on any other error, and when asked to stop", async () => {
    const { log } = recorder();
    await expect(
      openDatastoreWaiting(async () => Promise.reject(new RangeError("Bad datastore URL")), log),
    ).rejects.toThrow("Bad datastore URL");
    let stop = false;
    const got = await openDatastoreWaiting(
      async () => {
        stop = true;
        throw new UnavailableError("down");
      },
      log,
      { initialMs: 1, stopped: () => stop },
    );
    expect(got).toBeUndefined();
  });

  it("backs off 1 s doubling to 30 s", () => {
    expect([0, 1, 2, 3, 4, 5, 6, 40].map((n) => datastoreBackoffMs(n))).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000,
    ]);
  });
});

describe("ensureDefaultPools()", () => {
  it("creates default-ipv4-ippool and default-ipv6-ippool when no pool of the family exists, once", async () => {
    const store = new MemoryDatastore();
    const { log } = recorder();
    const settings = {
      v4: { cidr: "10.244.0.0/16", blockSize: 24, natOutgoing: true },
      v6: { cidr: "fd00:10:244::/48", blockSize: 122, natOutgoing: false },
    };
    expect(await ensureDefaultPools(store, settings, log)).toEqual([
      "default-ipv4-ippool",
      "default-ipv6-ippool",
    ]);
    const items = await pools(store);
    expect(items.map((p) => [p.metadata.name, p.spec])).toEqual([
      [
        "default-ipv4-ippool",
        expect.objectContaining({
          cidr: "10.244.0.0/16",
          blockSize: 24,
          natOutgoing: true,
          ipipMode: "Never",
        }),
      ],
      [
        "default-ipv6-ippool",
        expect.objectContaining({ cidr: "fd00:10:244::/48", blockSize: 122 }),
      ],
    ]);
    expect(await ensureDefaultPools(store, settings, log)).toEqual([]);
    await store.close();
  });

  it("leaves a family alone when it has a pool (any name), and does nothing without a CIDR", async () => {
    const store = new MemoryDatastore();
    const { log } = recorder();
    await new ResourceClient(store).write("create", {
      apiVersion: "projectcalico.org/v3",
      kind: "IPPool",
      metadata: { name: "mine" },
      spec: { cidr: "10.1.0.0/16" },
    });
    expect(
      await ensureDefaultPools(
        store,
        { v4: { cidr: "10.244.0.0/16", blockSize: 26, natOutgoing: true } },
        log,
      ),
    ).toEqual([]);
    expect(await ensureDefaultPools(store, {}, log)).toEqual([]);
    expect((await pools(store)).map((p) => p.metadata.name)).toEqual(["mine"]);
    await store.close();
  });
});

describe("chooseNodeAddress()", () => {
  const detected = async () => ({
    cidr: "10.0.0.9/24",
    iface: "eth1",
    method: "first-found",
    reason: "r",
  });
  const never = async (): Promise<never> => {
    throw new Error("autodetection must not run");
  };
  it("an explicit address wins; none removes; unset keeps the stored one", async () => {
    const { log } = recorder();
    expect(
      await chooseNodeAddress(
        4,
        { mode: "address", cidr: "10.0.0.5/24" },
        "10.0.0.7/24",
        never,
        log,
      ),
    ).toEqual({
      cidr: "10.0.0.5/24",
      how: "configured",
    });
    expect(
      (await chooseNodeAddress(4, { mode: "none" }, "10.0.0.7/24", never, log)).cidr,
    ).toBeNull();
    expect(await chooseNodeAddress(4, { mode: "keep" }, "10.0.0.7/24", never, log)).toEqual({
      cidr: undefined,
      how: "stored in the Node resource",
    });
  });

  it("autodetect detects even over a stored address; unset detects IPv4 when nothing is stored", async () => {
    const { log, lines } = recorder();
    expect(
      await chooseNodeAddress(4, { mode: "autodetect" }, "10.0.0.7/24", detected, log),
    ).toMatchObject({
      cidr: "10.0.0.9/24",
      iface: "eth1",
      how: "autodetected by first-found: r",
    });
    expect((await chooseNodeAddress(4, { mode: "keep" }, undefined, detected, log)).cidr).toBe(
      "10.0.0.9/24",
    );
    expect(
      (await chooseNodeAddress(6, { mode: "keep" }, undefined, never, log)).cidr,
    ).toBeUndefined();
    // Unset and nothing found: a warning, not a failure; autodetect asked for: a failure.
    const fails = async (): Promise<never> => {
      throw new Error("No IPv4 address found");
    };
    expect(
      (await chooseNodeAddress(4, { mode: "keep" }, undefined, fails, log)).cidr,
    ).toBeUndefined();
    expect(lines.at(-1)?.level).toBe("warn");
    await expect(
      chooseNodeAddress(4, { mode: "autodetect" }, undefined, fails, log),
    ).rejects.toThrow("No IPv4 address found");
  });
});
