// The CNI IPAM plugin in-process (runIpamPlugin) on the memory store: spec shapes and codes.
import { describe, expect, it } from "vitest";
import { CniErrorCode, runIpamPlugin } from "../../src/cni/ipam_plugin.js";
import { MemoryDatastore } from "../../src/datastore/memory.js";
import { UnavailableError } from "../../src/datastore/types.js";
import { putPool } from "./helpers.js";

function env(command: string, id = "c1"): NodeJS.ProcessEnv {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: id,
    CNI_NETNS: "/var/run/netns/x",
    CNI_IFNAME: "eth0",
    CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
    CNI_PATH: "/opt/cni/bin",
  };
}

function conf(
  extra: Record<string, unknown> = {},
  ipam: Record<string, unknown> = {},
  version = "1.0.0",
): string {
  return JSON.stringify({
    cniVersion: version,
    name: "k8s-pod-network",
    type: "ocelot-cni",
    datastore: "memory:",
    nodename: "n1",
    ipam: { type: "ocelot-ipam", ...ipam },
    ...extra,
  });
}

async function setup() {
  const ds = new MemoryDatastore();
  await putPool(ds, "default-ipv4", "10.10.0.0/30", { blockSize: 30 });
  const deps = {
    openStore: async () => ds,
    hostname: () => "host-a",
    storeOptions: { sleep: async () => {} },
  };
  // The plugin closes the store after each call; keep the memory store usable.
  ds.close = async () => {};
  return { ds, deps };
}

describe("ocelot-ipam plugin", () => {
  it("ADD returns a 1.0.0 result; a retried ADD returns the same address; DEL frees it", async () => {
    const { deps } = await setup();
    const add = await runIpamPlugin(env("ADD"), conf(), deps);
    expect(add.exitCode).toBe(0);
    const result = JSON.parse(add.stdout);
    expect(result).toEqual({
      cniVersion: "1.0.0",
      ips: [{ address: expect.stringMatching(/^10\.10\.0\.\d\/32$/) }],
      routes: [],
      dns: {},
    });
    expect(JSON.parse((await runIpamPlugin(env("ADD"), conf(), deps)).stdout)).toEqual(result);
    const check = await runIpamPlugin(env("CHECK"), conf({ prevResult: result }), deps);
    expect(check).toEqual({ stdout: "", exitCode: 0 });
    expect(await runIpamPlugin(env("DEL"), conf(), deps)).toEqual({ stdout: "", exitCode: 0 });
    const after = await runIpamPlugin(env("CHECK"), conf({ prevResult: result }), deps);
    expect(JSON.parse(after.stdout)).toMatchObject({ code: CniErrorCode.CheckMismatch });
  });

  it("0.4.0 results carry the IP version; 0.3.1 refuses CHECK", async () => {
    const { deps } = await setup();
    const add = await runIpamPlugin(env("ADD"), conf({}, {}, "0.4.0"), deps);
    expect(JSON.parse(add.stdout).ips[0]).toMatchObject({ version: "4" });
    const chk = await runIpamPlugin(env("CHECK"), conf({}, {}, "0.3.1"), deps);
    expect(JSON.parse(chk.stdout)).toMatchObject({
      cniVersion: "0.3.1",
      code: CniErrorCode.IncompatibleCniVersion,
    });
  });

  it("DEL of an unknown container succeeds", async () => {
    const { deps } = await setup();
    expect(await runIpamPlugin(env("DEL", "never-added"), conf(), deps)).toEqual({
      stdout: "",
      exitCode: 0,
    });
  });

  it("VERSION lists the supported versions", async () => {
    const { deps } = await setup();
    const v = await runIpamPlugin({ CNI_COMMAND: "VERSION" }, '{"cniVersion":"0.4.0"}', deps);
    expect(JSON.parse(v.stdout)).toEqual({
      cniVersion: "0.4.0",
      supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0"],
    });
  });

  it("pool exhaustion gives code 11 naming the pool and allocates nothing", async () => {
    const { ds, deps } = await setup();
    for (let i = 0; i < 4; i++)
      expect((await runIpamPlugin(env("ADD", `c${i}`), conf(), deps)).exitCode).toBe(0);
    const out = await runIpamPlugin(env("ADD", "c9"), conf(), deps);
    expect(out.exitCode).toBe(1);
    const err = JSON.parse(out.stdout);
    expect(err).toMatchObject({ cniVersion: "1.0.0", code: CniErrorCode.TryAgainLater });
    expect(err.msg).toContain('"default-ipv4"');
    expect(await ds.get("/ocelot/ipam/v2/handle/k8s-pod-network.c9")).toBeUndefined();
  });

  it("dual-stack: an exhausted IPv6 pool releases the IPv4 address it had just assigned", async () => {
    const { ds, deps } = await setup();
    await putPool(ds, "tiny-v6", "fd00::/127", { blockSize: 127 });
    await runIpamPlugin(env("ADD", "a"), conf(), deps);
    await runIpamPlugin(env("ADD", "b"), conf(), deps);
    const out = await runIpamPlugin(env("ADD", "c"), conf(), deps);
    expect(JSON.parse(out.stdout)).toMatchObject({
      code: 11,
      msg: expect.stringContaining('"tiny-v6"'),
    });
    const blocks = await ds.list("/ocelot/ipam/v2/assignment/ipv4/block/");
    const used = blocks.items
      .map((kv) => JSON.parse(kv.value).owners.length)
      .reduce((a: number, b: number) => a + b, 0);
    expect(used).toBe(2);
  });

  it("maps bad input to the spec's codes", async () => {
    const { deps } = await setup();
    const code = async (e: NodeJS.ProcessEnv, stdin: string) =>
      JSON.parse((await runIpamPlugin(e, stdin, deps)).stdout).code;
    expect(await code(env("ADD"), "{nope")).toBe(CniErrorCode.DecodingFailure);
    expect(await code(env("ADD"), conf({}, {}, "9.9.9"))).toBe(CniErrorCode.IncompatibleCniVersion);
    expect(await code({ ...env("ADD"), CNI_CONTAINERID: "" }, conf())).toBe(
      CniErrorCode.InvalidEnvironmentVariables,
    );
    expect(await code(env("ADD"), conf({}, { ipv4_pools: "x" }))).toBe(
      CniErrorCode.InvalidNetworkConfig,
    );
    expect(await code(env("ADD"), conf({}, { ipv4_pools: ["nope"] }))).toBe(
      CniErrorCode.InvalidNetworkConfig,
    );
    const down = {
      ...deps,
      openStore: async () => Promise.reject(new UnavailableError("etcd is down")),
    };
    expect(JSON.parse((await runIpamPlugin(env("ADD"), conf(), down)).stdout).code).toBe(
      CniErrorCode.TryAgainLater,
    );
  });
});
