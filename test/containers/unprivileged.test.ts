// The image run unprivileged (issue 17, security): `ocelot node run` in the project's image with
// every capability dropped but NET_ADMIN and NET_RAW (`podman run --cap-drop=all
// --cap-add=NET_ADMIN,NET_RAW`, no --privileged, its own network namespace), on the embedded
// store bind-mounted from the host, with an IP pool (NAT outgoing) and a block of its own. The
// sysctls the agent checks are set by the runtime (`--sysctl`), as the compose file does, since
// /proc/sys is read-only there. Read back from the host in the container's namespace: the
// daemon's effective capabilities are exactly those two; it is ready; its block's route, its
// iptables chains and its ipsets are in the kernel; the BGP speaker listens on port 179 (below
// 1024: `net.ipv4.ip_unprivileged_port_start` is lowered by the runtime, as CAP_NET_BIND_SERVICE
// is not given).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { IpamStore } from "../../src/ipam/store.js";
import { runSync } from "../helpers/limits.js";
import { RUN_PREFIX, skipWithReason, waitFor } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import { buildOcelotImage, containersUnavailableReason, IMAGES, Podman } from "./harness.js";

const skip = skipWithReason("the image run unprivileged", containersUnavailableReason());
const NODE = "unpriv-node";
/** CAP_NET_ADMIN (12) and CAP_NET_RAW (13). */
const NET_ADMIN_RAW = (1n << 12n) | (1n << 13n);

describe.skipIf(skip)("the image with only NET_ADMIN and NET_RAW", () => {
  let podman: Podman;
  let dir: string;
  const name = `${RUN_PREFIX}-unpriv`;
  let started = false;

  beforeAll(async () => {
    podman = new Podman();
    podman.ensureBaseImage();
    buildOcelotImage(podman);
    dir = mkdtempSync(join(tmpdir(), "ocelot-unpriv-"));
    const store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "unpriv", "10.247.0.0/24", { blockSize: 26, natOutgoing: true });
    await new IpamStore(store).autoAssign({ handleId: "unpriv-pod", node: NODE, num4: 1, num6: 0 });
    await store.close();
  }, 60 * 60_000);

  afterAll(() => {
    if (started) podman?.run(["rm", "-f", "-t", "5", name]);
    podman?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("runs the node daemon: ready, its routes, chains and ipsets in place, BGP listening", async () => {
    const sysctls = [
      "net.ipv4.ip_forward=1",
      "net.ipv6.conf.all.forwarding=1",
      "net.ipv4.conf.default.rp_filter=1",
      "net.ipv4.conf.default.proxy_arp=1",
      "net.ipv4.conf.default.route_localnet=1",
      "net.ipv4.ip_unprivileged_port_start=179",
    ].flatMap((s) => ["--sysctl", s]);
    const run = podman.run([
      "run",
      "-d",
      "--name",
      name,
      "--cap-drop=all",
      "--cap-add=NET_ADMIN,NET_RAW",
      "--network",
      "none",
      ...sysctls,
      "-v",
      `${dir}:/data`,
      IMAGES.ocelot,
      "ocelot",
      "node",
      "run",
      "--nodename",
      NODE,
      "--ip",
      "192.0.2.60/24",
      "--datastore",
      "file:/data/store.db",
      "--metrics-address",
      "127.0.0.1:9099",
    ]);
    expect(run.status, run.stderr).toBe(0);
    started = true;
    const logs = () => podman.run(["logs", name]).stdout + podman.run(["logs", name]).stderr;
    const pid = Number(podman.run(["inspect", "-f", "{{.State.Pid}}", name]).stdout.trim());
    expect(pid).toBeGreaterThan(0);
    const inNs = (...cmd: string[]) => runSync("nsenter", ["-t", String(pid), "-n", ...cmd]);
    await waitFor(
      "/readyz 200 in the container",
      () => {
        const r = inNs(
          "curl",
          "-s",
          "-o",
          "/dev/null",
          "-w",
          "%{http_code}",
          "http://127.0.0.1:9099/readyz",
        );
        if (podman.run(["inspect", "-f", "{{.State.Running}}", name]).stdout.trim() !== "true")
          throw new Error(`the container stopped:\n${logs()}`);
        return r.stdout === "200";
      },
      120_000,
      500,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${logs().slice(-4000)}`);
    });
    // The daemon itself (the container's PID 1) holds exactly NET_ADMIN and NET_RAW.
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const cap = (field: string) =>
      BigInt(`0x${new RegExp(`${field}:\\s+([0-9a-f]+)`).exec(status)?.[1]}`);
    expect(cap("CapEff").toString(16)).toBe(NET_ADMIN_RAW.toString(16));
    expect(cap("CapBnd").toString(16)).toBe(NET_ADMIN_RAW.toString(16));
    const routes = JSON.parse(inNs("ip", "-j", "route", "show", "proto", "202").stdout) as {
      dst: string;
      type?: string;
    }[];
    expect(routes.filter((r) => r.type === "blackhole").map((r) => r.dst)).toHaveLength(1);
    expect(routes[0]?.dst).toMatch(/^10\.247\.0\.\d+\/26$/);
    const ipt = inNs("iptables-save").stdout;
    expect(ipt).toContain(":ocl-nat-outgoing");
    expect(ipt).toContain("-A POSTROUTING");
    expect(inNs("ipset", "list", "-n").stdout).toContain("ocl-masq-ipam-pools");
    expect(inNs("ss", "-ltnH", "sport", "= :179").stdout).toContain(":179");
    console.log(
      `image unprivileged: CapEff ${cap("CapEff").toString(16)}; ready; routes ${routes.map((r) => r.dst).join(", ")}; ${ipt.split("\n").filter((l) => l.includes("ocl-")).length} iptables lines; BGP listening on 179`,
    );
  });
});
