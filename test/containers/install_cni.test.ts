// The DaemonSet's init container for real: `ocelot install-cni` runs inside the project's image
// (podman) with a temporary "host" bin and conf directory bind-mounted as /host/opt/cni/bin and
// /host/etc/cni/net.d, as config/k8s/daemonset.yaml mounts them. The plugin it installs is then
// run where neither Node.js nor /opt/ocelot nor iproute2 exists: in a container of the bare
// Debian base image (minbase) with the host's network, the same directories mounted where a
// node has them, and the pod's network namespace from the host; a CNI ADD gives the pod its
// address (read back from the kernel, pinged from the host), DEL takes it away, and
// `install-cni --uninstall` (in the image again) leaves the host's directories empty. VERSION
// also runs in a root file system holding nothing but /bin/sh and the two libraries it needs.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listWorkloadEndpoints } from "../../src/api/client.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { runSync } from "../helpers/limits.js";
import { Netns, RUN_PREFIX, skipWithReason } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import {
  BASE_IMAGE,
  buildOcelotImage,
  containersUnavailableReason,
  IMAGES,
  Podman,
} from "./harness.js";

const skip = skipWithReason("install-cni in the image", containersUnavailableReason());

interface CniResult {
  ips?: { address: string }[];
  code?: number;
  msg?: string;
}

describe.skipIf(skip)("install-cni from the image; the plugin on a host without Node.js", () => {
  let podman: Podman;
  let dir: string;
  let binDir: string;
  let confDir: string;
  let stateDir: string;
  let pod: Netns | undefined;
  const nodename = `${RUN_PREFIX}-node`;
  const containerId = `${RUN_PREFIX}-ctr`;

  /** The init container: install-cni in the image, the host's directories under /host. */
  const initContainer = (...args: string[]) =>
    podman.run([
      ...["run", "--rm", "--network", "none"],
      ...["-v", `${binDir}:/host/opt/cni/bin`, "-v", `${confDir}:/host/etc/cni/net.d`],
      ...["-e", `NODENAME=${nodename}`, IMAGES.ocelot],
      ...["ocelot", "install-cni", "--bin-dir", "/host/opt/cni/bin"],
      ...["--conf-dir", "/host/etc/cni/net.d", "--json", ...args],
    ]);

  /** The runtime on a node without Node.js: the plugin run in the bare base image. */
  const onBareHost = (command: string, netconf: string) =>
    podman.run(
      [
        ...["run", "--rm", "-i", "--privileged", "--network", "host"],
        ...["-v", `${binDir}:/opt/cni/bin`, "-v", `${confDir}:/etc/cni/net.d`],
        ...["-v", `${stateDir}:/var/lib/ocelot`, "-v", "/run/netns:/run/netns"],
        ...["-e", `CNI_COMMAND=${command}`, "-e", `CNI_CONTAINERID=${containerId}`],
        ...["-e", `CNI_NETNS=/run/netns/${pod?.name}`, "-e", "CNI_IFNAME=eth0"],
        ...["-e", "CNI_PATH=/opt/cni/bin", "-e", `CNI_ARGS=K8S_POD_NAME=${RUN_PREFIX}-pod`],
        BASE_IMAGE,
        "sh",
        "-c",
        // The proof that this "host" has none of what the image has.
        "for c in node ip; do if command -v $c; then echo has $c >&2; exit 90; fi; done; " +
          "if [ -e /opt/ocelot ]; then echo has /opt/ocelot >&2; exit 91; fi; " +
          "exec /opt/cni/bin/ocelot-cni",
      ],
      { input: netconf },
    );

  beforeAll(async () => {
    podman = new Podman();
    podman.ensureBaseImage();
    buildOcelotImage(podman);
    dir = mkdtempSync(join(tmpdir(), "ocelot-install-image-"));
    binDir = join(dir, "opt/cni/bin");
    confDir = join(dir, "etc/cni/net.d");
    stateDir = join(dir, "var/lib/ocelot");
    for (const d of [binDir, confDir, stateDir]) mkdirSync(d, { recursive: true });
    const store = new SqliteDatastore(join(stateDir, "store.db"));
    await putPool(store, "pool", "10.76.0.0/24", { blockSize: 28 });
    await store.close();
  }, 70 * 60_000); // a cold base image and image build on a loaded machine

  afterAll(() => {
    pod?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
    podman?.cleanup();
  });

  it("the image installs the plugin into the host's directories", () => {
    const r = initContainer("--datastore", "file:/var/lib/ocelot/store.db");
    expect(r.status, r.stderr).toBe(0);
    const written = (JSON.parse(r.stdout) as { written: string[] }).written;
    expect(written).toContain("/host/opt/cni/bin/ocelot-cni");
    expect(written).toContain("/host/etc/cni/net.d/10-ocelot.conflist");
    const versions = readdirSync(join(binDir, "ocelot.d"));
    expect(versions).toHaveLength(1);
    const payload = join(binDir, "ocelot.d", versions[0] as string);
    expect(readdirSync(payload).sort()).toEqual(["app", "lib", "node"]);
    const launcher = readFileSync(join(binDir, "ocelot-cni"), "utf8");
    expect(launcher).not.toContain("/opt/ocelot");
    expect(launcher).not.toContain("/host/");
    const conflist = JSON.parse(readFileSync(join(confDir, "10-ocelot.conflist"), "utf8"));
    expect(conflist.plugins[0]).toMatchObject({
      datastore_file: "/etc/cni/net.d/ocelot-datastore",
      nodename,
    });
    // Again: nothing changes.
    const again = initContainer("--datastore", "file:/var/lib/ocelot/store.db");
    expect(JSON.parse(again.stdout).written).toEqual([]);
  });

  it("VERSION runs in a root file system with only /bin/sh and its two libraries", () => {
    const root = join(dir, "rootfs");
    for (const d of ["bin", "lib64", "lib/x86_64-linux-gnu", "opt/cni/bin", "proc", "dev"])
      mkdirSync(join(root, d), { recursive: true });
    copyFileSync("/bin/dash", join(root, "bin/sh"));
    runSync("chmod", ["755", join(root, "bin/sh")]);
    copyFileSync("/lib64/ld-linux-x86-64.so.2", join(root, "lib64/ld-linux-x86-64.so.2"));
    copyFileSync("/lib/x86_64-linux-gnu/libc.so.6", join(root, "lib/x86_64-linux-gnu/libc.so.6"));
    const r = podman.run(
      [
        ...["run", "--rm", "-i", "--network", "none", "-v", `${binDir}:/opt/cni/bin`],
        ...["-e", "CNI_COMMAND=VERSION", "-e", "OCELOT_BUNDLE_REPORT=1"],
        ...["--rootfs", root, "/opt/cni/bin/ocelot-cni"],
      ],
      { input: '{"cniVersion":"1.0.0"}' },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).supportedVersions).toContain("1.0.0");
    // The code cache made in the image by the same Node.js is taken on the host.
    expect(r.stderr).toContain("code cache accepted");
  });

  it("ADD on the bare host gives the pod its address; DEL takes it away", async () => {
    pod = Netns.create("pod");
    const conflist = JSON.parse(readFileSync(join(confDir, "10-ocelot.conflist"), "utf8"));
    const netconf = JSON.stringify({
      cniVersion: conflist.cniVersion,
      name: conflist.name,
      ...conflist.plugins[0],
    });
    const add = onBareHost("ADD", netconf);
    expect(add.status, `${add.stdout}${add.stderr}`).toBe(0);
    const result = JSON.parse(add.stdout) as CniResult;
    const address = result.ips?.[0]?.address ?? "";
    expect(address).toMatch(/^10\.76\.0\.\d+\/32$/);
    const ip = address.split("/")[0] as string;
    // The kernel's view: the address in the pod, a route to it on the host, the pod answers.
    const inPod = JSON.parse(pod.exec("ip", "-j", "-4", "addr", "show", "dev", "eth0")) as {
      addr_info: { local: string }[];
    }[];
    expect(inPod[0]?.addr_info.map((a) => a.local)).toEqual([ip]);
    const routes = JSON.parse(runSync("ip", ["-j", "route", "show", `${ip}/32`]).stdout);
    expect(routes).toHaveLength(1);
    const ping = runSync("ping", ["-c3", "-W5", ip]);
    expect(ping.status, ping.stdout).toBe(0);
    const store = new SqliteDatastore(join(stateDir, "store.db"));
    try {
      const weps = await listWorkloadEndpoints(store);
      expect(weps.map((w) => [w.spec.node, w.spec.ipNetworks])).toEqual([[nodename, [`${ip}/32`]]]);
      const del = onBareHost("DEL", netconf);
      expect(del.status, `${del.stdout}${del.stderr}`).toBe(0);
      expect(await listWorkloadEndpoints(store)).toEqual([]);
    } finally {
      await store.close();
    }
    expect(JSON.parse(runSync("ip", ["-j", "route", "show", `${ip}/32`]).stdout)).toEqual([]);
  });

  it("install-cni --uninstall in the image leaves the host's directories empty", () => {
    const r = initContainer("--uninstall");
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).kept).toEqual([]);
    expect(readdirSync(binDir)).toEqual([]);
    expect(readdirSync(confDir)).toEqual([]);
  });
});
