// A real CNI runtime on the conflist `ocelot install-cni` writes: podman 4 with its CNI backend
// (libcni inside), `cni_plugin_dirs` = the install's bin directory and Debian's reference
// plugins (portmap, loopback), `network_config_dir` = the install's conf directory, on the
// embedded store. A named and an unnamed container (podman then passes a generated name such
// as `pensive_beaver`) get addresses and WorkloadEndpoints, reach each other and the host, a
// host port answers through the chained portmap, and `podman rm -f` leaves no address, route,
// interface or WorkloadEndpoint. Builds the base image (../shared/lab/containers) when missing.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listWorkloadEndpoints } from "../../src/api/client.js";
import { isDns1123Subdomain } from "../../src/api/fields.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { freePort } from "../helpers/etcd.js";
import { runSync } from "../helpers/limits.js";
import { RUN_PREFIX, skipWithReason, waitFor } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import { BASE_IMAGE, cniPodmanEnv, REFERENCE_CNI_PLUGINS, sharedContainers } from "./harness.js";

const ROOT = new URL("../..", import.meta.url).pathname;
const OCELOT = join(ROOT, "bin/ocelot");
const LAB = sharedContainers;
const IMAGE = process.env.OCELOT_BASE_IMAGE ?? BASE_IMAGE;
const REFERENCE_PLUGINS = REFERENCE_CNI_PLUGINS;
/** Building the base image takes ~2.5 min here; this bounds a hang. */
const IMAGE_BUILD_MS = 15 * 60_000;

function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root";
  if (runSync("podman", ["--version"]).status !== 0)
    return "podman is not installed (scripts/setup.sh)";
  for (const p of ["portmap", "loopback"])
    if (!existsSync(join(REFERENCE_PLUGINS, p)))
      return `${REFERENCE_PLUGINS}/${p} missing (containernetworking-plugins)`;
  if (LAB === undefined) return "no ../shared/lab/containers (containers.conf)";
  if (!existsSync(join(LAB, "containers.conf"))) return `${LAB}/containers.conf missing`;
  if (runSync("python3", ["--version"]).status !== 0)
    return "python3 missing (the test's HTTP server)";
  return undefined;
}
const skip = skipWithReason("podman CNI", unavailable());

interface IpAddr {
  ifname: string;
  addr_info: { family: string; local: string; prefixlen: number }[];
}

describe.skipIf(skip)("podman (CNI backend) on the conflist ocelot install-cni writes", () => {
  let dir: string;
  let binDir: string;
  let confDir: string;
  let store: SqliteDatastore;
  let env: NodeJS.ProcessEnv;
  let hostPort: number;
  let server: ChildProcess | undefined;
  const network = `${RUN_PREFIX}-net`;
  const named = `${RUN_PREFIX}-web`;
  const containers: string[] = [];
  /** The host side of each container's veth (from its WorkloadEndpoint). */
  const hostIfaces: string[] = [];
  const podman = (...args: string[]) => {
    const r = runSync("podman", args, { env });
    if (r.status !== 0) throw new Error(`podman ${args.join(" ")}: ${r.stderr}`);
    return r.stdout.trim();
  };
  const pidOf = (c: string) => podman("inspect", "-f", "{{.State.Pid}}", c);
  const inCtr = (c: string, ...cmd: string[]) => runSync("nsenter", ["-t", pidOf(c), "-n", ...cmd]);
  const addrOf = (c: string) => {
    const r = inCtr(c, "ip", "-j", "addr", "show", "dev", "eth0");
    const a = (JSON.parse(r.stdout) as IpAddr[])[0]?.addr_info.find((i) => i.family === "inet");
    return a?.local as string;
  };
  const hostAddress = () =>
    (
      JSON.parse(runSync("ip", ["-j", "route", "get", "192.0.2.200"]).stdout) as {
        prefsrc: string;
      }[]
    )[0]?.prefsrc as string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-podman-cni-"));
    binDir = join(dir, "bin");
    confDir = join(dir, "net.d");
    env = cniPodmanEnv(dir, [binDir, REFERENCE_PLUGINS], confDir);
    // The base image, built once and kept in podman's storage (the script does nothing when it exists).
    const image = runSync("bash", [join(LAB as string, "make-base-image.sh"), IMAGE], {
      env,
      timeout: IMAGE_BUILD_MS,
    });
    if (image.status !== 0) throw new Error(`make-base-image.sh: ${image.stdout}${image.stderr}`);

    const url = `file:${join(dir, "store.db")}`;
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "podpool", "10.74.0.0/24", { blockSize: 28 });
    const inst = runSync(OCELOT, [
      ...["install-cni", "--bin-dir", binDir, "--conf-dir", confDir, "--datastore", url],
      ...["--network-name", network, "--log-file-path", join(dir, "cni.log")],
    ]);
    expect(inst.status, inst.stderr).toBe(0);
    hostPort = await freePort();
  }, IMAGE_BUILD_MS + 120_000);

  afterAll(async () => {
    if (server?.pid && server.exitCode === null) server.kill("SIGKILL");
    for (const c of containers) runSync("podman", ["rm", "-f", "-t", "0", c], { env });
    await store?.close();
    if (binDir) runSync(OCELOT, ["install-cni", "--uninstall", "--conf-dir", confDir]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("podman lists the installed network", () => {
    expect(podman("network", "ls", "--format", "{{.Name}} {{.Driver}}")).toContain(
      `${network} ocelot-cni`,
    );
  });

  it("named and unnamed containers get addresses and endpoints, reach each other and the host; a host port answers", async () => {
    containers.push(
      podman(
        "run",
        "-d",
        "--network",
        network,
        "--name",
        named,
        "-p",
        `${hostPort}:8000`,
        IMAGE,
        "sleep",
        "600",
      ),
    );
    containers.push(podman("run", "-d", "--network", network, IMAGE, "sleep", "600"));
    const [a, b] = containers as [string, string];
    const ipA = addrOf(a);
    const ipB = addrOf(b);
    expect(ipA).toMatch(/^10\.74\.0\./);
    expect(ipB).toMatch(/^10\.74\.0\./);
    expect(ipA).not.toBe(ipB);

    const weps = await listWorkloadEndpoints(store);
    expect(weps.map((w) => w.spec.pod).sort()).toEqual(
      [named, podman("inspect", "-f", "{{.Name}}", b)].sort(),
    );
    for (const w of weps) expect(isDns1123Subdomain(w.metadata.name), w.metadata.name).toBe(true);
    hostIfaces.push(...weps.map((w) => w.spec.interfaceName as string));
    for (const i of hostIfaces) expect(runSync("ip", ["link", "show", "dev", i]).status, i).toBe(0);
    expect(weps.map((w) => w.spec.ipNetworks?.[0]).sort()).toEqual(
      [`${ipA}/32`, `${ipB}/32`].sort(),
    );

    for (const [from, to] of [
      [a, ipB],
      [b, ipA],
      [a, hostAddress()],
    ] as const) {
      const ping = inCtr(from, "ping", "-c3", "-W5", to);
      expect(ping.status, `${from} -> ${to}: ${ping.stdout}${ping.stderr}`).toBe(0);
    }
    const fromHost = runSync("ping", ["-c3", "-W5", ipB]);
    expect(fromHost.status, fromHost.stdout).toBe(0);

    // A server in the named container's network namespace; the host port reaches it through portmap.
    server = spawn("nsenter", ["-t", pidOf(a), "-n", "python3", "-m", "http.server", "8000"], {
      stdio: "ignore",
    });
    const status = () =>
      new Promise<number>((resolve) => {
        const req = get(
          { host: hostAddress(), port: hostPort, path: "/", timeout: 30_000 },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on("error", () => resolve(0));
        req.on("timeout", () => req.destroy());
      });
    let last = 0;
    await waitFor(`host port ${hostPort} to answer`, async () => {
      last = await status();
      return last === 200;
    });
    expect(last).toBe(200);
    server.kill("SIGTERM");
  });

  it("podman rm -f leaves no address, route, interface or WorkloadEndpoint", async () => {
    const ips = containers.map(addrOf);
    for (const c of containers) podman("rm", "-f", "-t", "0", c);
    containers.length = 0;
    expect(await listWorkloadEndpoints(store)).toEqual([]);
    const routes = JSON.parse(runSync("ip", ["-j", "route", "show", "proto", "202"]).stdout) as {
      dst: string;
    }[];
    for (const ip of ips) expect(routes.map((r) => r.dst)).not.toContain(ip);
    expect(hostIfaces).toHaveLength(2);
    for (const i of hostIfaces)
      expect(runSync("ip", ["link", "show", "dev", i]).status, i).not.toBe(0);
    const show = runSync(OCELOT, [
      "ipam",
      "show",
      "--ip",
      ips[0] as string,
      "--datastore",
      `file:${join(dir, "store.db")}`,
    ]);
    expect(show.stdout).toContain(`IP ${ips[0]} is not assigned`);
    const check = runSync(OCELOT, [
      "ipam",
      "check",
      "--datastore",
      `file:${join(dir, "store.db")}`,
    ]);
    expect(check.stdout).toContain("Leaked addresses (allocated, no WorkloadEndpoint): 0");
  });
});
