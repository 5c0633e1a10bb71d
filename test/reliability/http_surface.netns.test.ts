// The node daemon's network surface (issue 17, security): the real `ocelot node run` in its own
// namespace (embedded store, BGP on with no peers), its every listening socket read from the
// kernel (`ss -ltunp`, by its PID). Without `--metrics-address` it serves no HTTP at all: its
// only inet listener is BGP's port 179 (the status and CNI hand-off sockets are unix sockets,
// mode 0600). With `--metrics-address 127.0.0.1:port` that one loopback address is added and
// nothing else; every path it serves (and one it does not) answers POST, PUT, DELETE and PATCH
// with 405 and `Allow: GET, HEAD` (RFC 9110 §15.5.6), with or without a body, and after them the
// store (every key and its revision but the daemon's periodic CalicoNodeStatus), the daemon's
// kernel routes and its readiness are as before:
// nothing on HTTP changes state. In a status socket directory another user owns, no socket is
// served (the daemon runs on and logs why); `ocelot bgpd` refuses to start, saying why in a line. The shipped deployment files bind the endpoint to loopback.
import { spawnSync } from "node:child_process";
import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { HEALTH_PATHS } from "../../src/lib/health_server.js";
import { addUplink } from "../helpers/cni.js";
import { HANG_MS } from "../helpers/limits.js";
import { Netns, netnsUnavailableReason, skipWithReason, waitFor } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import { daemonTestsUnavailable, type NodeProcess, ROOT, startNode } from "../node/harness.js";

const skip = skipWithReason(
  "node daemon network surface",
  netnsUnavailableReason() ?? daemonTestsUnavailable(),
);
const NODE = "surface-node";
const IP = "192.0.2.30";

/** The daemon's listening inet sockets in ns, as "tcp 127.0.0.1:9099" (from ss, by its PID). */
function listeners(ns: Netns, pid: number): string[] {
  return ns
    .exec("ss", "-H", "-l", "-n", "-p", "-t", "-u")
    .split("\n")
    .filter((l) => l.includes(`pid=${pid},`))
    .map((l) => {
      const f = l.trim().split(/\s+/);
      return `${f[0]} ${f[4]}`;
    })
    .sort();
}

/** curl -X method inside ns: status, the Allow header, the body. */
function request(
  ns: Netns,
  port: number,
  method: string,
  path: string,
  body?: string,
): { status: number; allow?: string; text: string } {
  const args = ["-s", "-i", "--max-time", String(HANG_MS / 1000), "-X", method];
  if (body !== undefined) args.push("-H", "Content-Type: application/json", "--data", body);
  const r = spawnSync(
    "ip",
    ["netns", "exec", ns.name, "curl", ...args, `http://127.0.0.1:${port}${path}`],
    { encoding: "utf8", timeout: HANG_MS },
  );
  const out = r.stdout ?? "";
  const status = Number(/^HTTP\/1\.1 (\d+)/.exec(out)?.[1] ?? 0);
  const allow = /^allow: (.*)\r?$/im.exec(out)?.[1]?.trim();
  return {
    status,
    ...(allow ? { allow } : {}),
    text: out
      .split(/\r?\n\r?\n/)
      .slice(1)
      .join("\n"),
  };
}

describe.skipIf(skip)("the node daemon's network surface: loopback only, read-only HTTP", () => {
  let dir: string;
  let store: SqliteDatastore;
  let node: Netns;
  let daemon: NodeProcess | undefined;

  const args = (extra: string[]) => [
    "--nodename",
    NODE,
    "--ip",
    `${IP}/24`,
    "--datastore",
    `file:${join(dir, "store.db")}`,
    "--status-socket",
    join(dir, "run", "node.sock"),
    "--mtu-file",
    join(dir, "mtu"),
    ...extra,
  ];
  /**
   * Every key of the store with its mod revision, but the node's CalicoNodeStatus: the daemon
   * rewrites its own status report on a period, whatever HTTP does.
   */
  const snapshot = async () => {
    const all = await store.list("");
    return all.items
      .filter((kv) => !kv.key.includes("/caliconodestatuses/"))
      .map((kv) => `${kv.key}@${kv.modRevision}`)
      .sort();
  };
  const kernel = () => node.exec("ip", "-d", "route", "show", "table", "all");

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-surface-"));
    store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "pool", "10.78.0.0/16", { blockSize: 26 });
    node = Netns.create("hs");
    addUplink(node, `${IP}/24`);
  });

  afterAll(async () => {
    await daemon?.stop();
    node?.destroy();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("without --metrics-address: no HTTP, BGP's port the only inet listener, unix sockets 0600", async () => {
    daemon = await startNode(node, args([]));
    const pid = daemon.proc.pid as number;
    await waitFor("BGP listening", () => listeners(node, pid).length > 0, HANG_MS, 100);
    // Let the daemon finish starting (its first pass) before reading what it listens on.
    await waitFor("the first convergence", () => daemon?.has(/converged/), HANG_MS, 100);
    const seen = listeners(node, pid);
    console.log(`http surface: without --metrics-address, listening: ${seen.join(", ")}`);
    expect(
      seen.every((l) => /^tcp .*:179$/.test(l)),
      seen.join(", "),
    ).toBe(true);
    for (const sock of ["node.sock", "cni.sock"]) {
      const st = statSync(join(dir, "run", sock));
      expect(st.isSocket(), sock).toBe(true);
      expect((st.mode & 0o777).toString(8), `${sock}'s mode`).toBe("600");
    }
    expect(await daemon.stop()).toBe(0);
    daemon = undefined;
  });

  it("with --metrics-address on loopback: that one address more; every non-GET method refused with 405, nothing changed", async () => {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    daemon = await startNode(node, args(["--metrics-address", `127.0.0.1:${port}`]));
    const pid = daemon.proc.pid as number;
    await waitFor(
      "/readyz 200",
      () => request(node, port, "GET", HEALTH_PATHS.ready).status === 200,
      HANG_MS,
      200,
    );
    const seen = listeners(node, pid);
    console.log(
      `http surface: with --metrics-address 127.0.0.1:${port}, listening: ${seen.join(", ")}`,
    );
    expect(seen.filter((l) => !/^tcp .*:179$/.test(l))).toEqual([`tcp 127.0.0.1:${port}`]);

    // Quiet first: the kernel's routes the same over 2 s (the daemon's own work done).
    let last = kernel();
    await waitFor(
      "the kernel's routes settled",
      async () => {
        await new Promise((r) => setTimeout(r, 2000));
        const now = kernel();
        const same = now === last;
        last = now;
        return same;
      },
      HANG_MS,
      0,
    );
    const before = await snapshot();
    const routes = kernel();
    const paths = [...Object.values(HEALTH_PATHS), "/", "/nope", "/readyz?ready=false"];
    const bodies = [undefined, '{"ready":false,"level":"debug"}'];
    let tried = 0;
    for (const path of paths)
      for (const method of ["POST", "PUT", "DELETE", "PATCH"])
        for (const body of bodies) {
          const r = request(node, port, method, path, body);
          tried++;
          expect(r.status, `${method} ${path}`).toBe(405);
          expect(r.allow, `${method} ${path}: the Allow header`).toBe("GET, HEAD");
        }
    // HEAD and GET are served (HEAD without a body).
    expect(request(node, port, "HEAD", HEALTH_PATHS.metrics).status).toBe(200);
    expect(request(node, port, "GET", "/nope").status).toBe(404);
    console.log(`http surface: ${tried} state-changing requests, each 405`);
    expect(request(node, port, "GET", HEALTH_PATHS.ready).status).toBe(200);
    expect(request(node, port, "GET", HEALTH_PATHS.live).status).toBe(200);
    expect(await snapshot()).toEqual(before);
    expect(kernel()).toBe(routes);
    expect(daemon.proc.exitCode).toBe(null);
    // Stopped here: the next case's daemon would otherwise run beside this one (same namespace,
    // store and node name; its BGP port taken).
    expect(await daemon.stop()).toBe(0);
    daemon = undefined;
  });

  it("a status socket directory another user owns: nothing served there, the reason logged", async () => {
    const other = join(dir, "other");
    mkdirSync(other, { mode: 0o755 });
    chownSync(other, 65534, 65534);
    const sock = join(other, "node.sock");
    daemon = await startNode(
      node,
      args([]).map((a) => (a === join(dir, "run", "node.sock") ? sock : a)),
    );
    // The daemon runs on (forwarding does not need the socket) and says why it serves none.
    await waitFor(
      "the refusal logged",
      () => daemon?.lines.some((l) => JSON.stringify(l).includes(`${other} belongs to uid 65534`)),
      HANG_MS,
      100,
    );
    const lines = daemon.lines.filter((l) => JSON.stringify(l).includes("belongs to uid 65534"));
    console.log(`http surface: ${lines.map((l) => l.msg).join("; ")}`);
    expect(existsSync(sock), "a socket in the other user's directory").toBe(false);
    expect(existsSync(join(other, "cni.sock")), "the CNI socket there").toBe(false);
    expect(daemon.proc.exitCode).toBe(null);
    expect(await daemon.stop()).toBe(0);
    daemon = undefined;
  });

  it("ocelot bgpd with such a directory refuses to start, in one line", () => {
    const other = join(dir, "other");
    if (!existsSync(other)) {
      mkdirSync(other, { mode: 0o755 });
      chownSync(other, 65534, 65534);
    }
    const conf = join(dir, "bgpd.yaml");
    writeFileSync(
      conf,
      JSON.stringify({
        asn: 64512,
        routerId: "10.0.0.1",
        listen: { address: "127.0.0.1", port: 1179 },
        peers: [],
        status: { socket: join(other, "bgpd.sock") },
      }),
    );
    const r = spawnSync(
      "ip",
      ["netns", "exec", node.name, join(ROOT, "bin", "ocelot"), "bgpd", "--config", conf],
      { encoding: "utf8", timeout: HANG_MS },
    );
    const err = r.stderr.trim();
    console.log(`http surface: bgpd exited ${r.status}: ${err}`);
    expect(r.status).toBe(1);
    expect(err).toContain(
      `Cannot serve the status socket: Status socket directory ${other} belongs to uid 65534`,
    );
    expect(err.split("\n"), "one line, no stack").toHaveLength(1);
    expect(existsSync(join(other, "bgpd.sock"))).toBe(false);
  });

  it("the shipped deployment files bind the endpoint to loopback", () => {
    const daemonset = readFileSync(join(ROOT, "config/k8s/daemonset.yaml"), "utf8");
    const compose = readFileSync(join(ROOT, "docker-compose.yml"), "utf8");
    const addresses = [
      ...[...daemonset.matchAll(/"--metrics-address",\s*"([^"]+)"/g)].map((m) => m[1]),
      ...[...compose.matchAll(/OCELOT_METRICS_ADDRESS:\s*(\S+)/g)].map((m) => m[1]),
    ];
    expect(addresses.length).toBeGreaterThan(0);
    for (const a of addresses) expect(a).toMatch(/^(127\.0\.0\.1|\[::1\]|localhost):\d+$/);
  });
});
