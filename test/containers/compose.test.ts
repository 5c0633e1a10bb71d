// The top-level docker-compose.yml for real: docker-compose 1.29 against podman's Docker API on
// a private socket builds every image from the project's files (FROM the shared Debian base) and
// brings up etcd, three Ocelot nodes and the FRR ToR on a fabric subnet of this run. Then: every
// node's Node is in etcd, every mesh and ToR session is Established (`ocelot status --json` in
// each node, FRR's `show bgp summary json`), pods made in each node container through the real
// ocelot-cni ping each other across nodes and see each other's own addresses, and
// `docker-compose down` leaves no container, network or namespace. Prints the time from `up` to
// all sessions Established and to the first pod ping. Everything is removed also on failure.
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readlinkSync } from "node:fs";
import { loadavg } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HANG_MS } from "../helpers/limits.js";
import { RUN_PREFIX, sh, skipWithReason, waitFor } from "../helpers/netns.js";
import {
  BASE_IMAGE,
  Compose,
  containersUnavailableReason,
  DockerApi,
  hostExtraCaCerts,
  IMAGES,
  Podman,
} from "./harness.js";

const skip = skipWithReason("docker-compose cluster", containersUnavailableReason());

const NODES = ["node1", "node2", "node3"] as const;
const NODE_AS = 64512;
const TOR_AS = 65000;
const POOL = "10.244.0.0/16";
/** Hang limits: a build with nothing cached compiles SQLite and Node's addon (18 min seen at load 45). */
const BUILD_MS = 60 * 60_000;
const CLUSTER_MS = 20 * 60_000;

interface Pod {
  node: string;
  name: string;
  ip: string;
}

/** A /24 of 172.31.0.0/16 that no podman network and no host route uses (the fabric). */
function freeFabric(podman: Podman): string {
  const used = `${podman.ok(["network", "ls", "--format", "{{range .Subnets}}{{.Subnet}} {{end}}"])} ${sh("ip", ["-4", "route", "show", "table", "all"])}`;
  for (let i = 0; i < 50; i++) {
    const third = 100 + Math.floor(Math.random() * 150);
    const prefix = `172.31.${third}`;
    if (!used.includes(`${prefix}.`) && !used.includes("172.31.0.0/16")) return prefix;
  }
  throw new Error("no free /24 in 172.31.100-249.0 for the fabric");
}

/** Network namespaces held by any process on the host (inode numbers). */
function hostNetnsInodes(): Set<string> {
  const out = new Set<string>();
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      out.add(readlinkSync(`/proc/${pid}/ns/net`).replace(/\D/g, ""));
    } catch {
      // gone meanwhile, or a kernel thread
    }
  }
  return out;
}

describe.skipIf(skip)("docker-compose.yml (podman)", () => {
  let podman: Podman;
  let api: DockerApi;
  let compose: Compose;
  let fabric: string;
  const project = `${RUN_PREFIX}c`.toLowerCase();
  const pods: Pod[] = [];
  const netnsInodes = new Set<string>();
  const containerIds: string[] = [];
  let bridge: string | undefined;
  let downDone = false;
  const servers: ChildProcess[] = [];

  beforeAll(async () => {
    podman = new Podman();
    podman.ensureBaseImage();
    api = new DockerApi(podman);
    await api.start();
    fabric = freeFabric(podman);
    compose = new Compose(project, api, {
      OCELOT_BASE_IMAGE: BASE_IMAGE,
      OCELOT_FABRIC: fabric,
      OCELOT_EXTRA_CA_CERTS: hostExtraCaCerts(),
    });
  }, 30 * 60_000);

  afterAll(async () => {
    for (const s of servers) if (s.exitCode === null && s.pid) s.kill("SIGKILL");
    try {
      if (compose && !downDone) {
        const r = compose.run(["down", "--volumes", "--remove-orphans", "--timeout", "10"]);
        if (r.status !== 0) console.warn(`docker-compose down: ${r.stderr}`);
      }
      // Whatever down left (a failed run): this project's containers and network, by label.
      if (podman && compose) {
        const left = podman
          .run(["ps", "-aq", "--filter", `label=com.docker.compose.project=${project}`])
          .stdout.split("\n")
          .filter(Boolean);
        if (left.length > 0) podman.run(["rm", "-f", "-t", "0", ...left]);
        podman.run(["network", "rm", "-f", `${project}_fabric`]);
      }
    } finally {
      await api?.stop();
      podman?.cleanup();
    }
  });

  /** podman exec in a service's container; privileged when the step is the runtime's own. */
  const exec = (
    service: string,
    cmd: string[],
    opts: { privileged?: boolean; input?: string } = {},
  ) =>
    podman.run(
      [
        "exec",
        ...(opts.input !== undefined ? ["-i"] : []),
        ...(opts.privileged ? ["--privileged"] : []),
        compose.container(service),
        ...cmd,
      ],
      { input: opts.input },
    );
  /** execOk without blocking: the pods of the nodes are wired at the same time. */
  const execOkAsync = async (
    service: string,
    cmd: string[],
    opts: { privileged?: boolean; input?: string } = {},
  ) => {
    const r = await podman.runAsync(
      [
        "exec",
        ...(opts.input !== undefined ? ["-i"] : []),
        ...(opts.privileged ? ["--privileged"] : []),
        compose.container(service),
        ...cmd,
      ],
      { ...(opts.input !== undefined ? { input: opts.input } : {}) },
    );
    if (r.status !== 0)
      throw new Error(`${service}: ${cmd.join(" ")}: exit ${r.status}: ${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  const execOk = (
    service: string,
    cmd: string[],
    opts: { privileged?: boolean; input?: string } = {},
  ) => {
    const r = exec(service, cmd, opts);
    if (r.status !== 0)
      throw new Error(`${service}: ${cmd.join(" ")}: exit ${r.status}: ${r.stdout}${r.stderr}`);
    return r.stdout;
  };

  it(
    "docker-compose build builds every image from the project's files",
    () => {
      const started = Date.now();
      compose.ok(["build"], 60 * 60_000);
      console.log(
        `docker-compose build: ${((Date.now() - started) / 1000).toFixed(0)} s (cached layers count)`,
      );
      for (const image of Object.values(IMAGES))
        expect(podman.imageExists(image), image).toBe(true);
      console.log(
        Object.entries(IMAGES)
          .map(([k, ref]) => `${k} ${(podman.imageSize(ref) / 1e6).toFixed(1)} MB`)
          .join(", "),
      );
    },
    BUILD_MS,
  );

  it(
    "up: Nodes in etcd, every mesh and ToR session Established, pods ping across nodes and see each other's own addresses",
    async () => {
      const t0 = Date.now();
      compose.ok(["up", "-d"], HANG_MS * 3);
      const upReturned = (Date.now() - t0) / 1000;
      for (const s of ["etcd", "tor", ...NODES]) {
        const id = podman.ok(["inspect", "--format", "{{.Id}}", compose.container(s)]).trim();
        containerIds.push(id);
        const pid = podman
          .ok(["inspect", "--format", "{{.State.Pid}}", compose.container(s)])
          .trim();
        netnsInodes.add(readlinkSync(`/proc/${pid}/ns/net`).replace(/\D/g, ""));
      }
      bridge = JSON.parse(podman.ok(["network", "inspect", `${project}_fabric`]))[0]?.plugins?.find(
        (p: { type: string }) => p.type === "bridge",
      )?.bridge;

      // The one-shot applied the pool and the ToR's BGPPeer.
      await waitFor(
        "ocelot-init to apply config/compose/cluster.yaml",
        () => {
          const s = podman.ok([
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            compose.container("ocelot-init"),
          ]);
          if (/^exited [1-9]/.test(s)) throw new Error(`ocelot-init failed: ${s}`);
          return s.trim() === "exited 0";
        },
        120_000,
        500,
      );

      // Every node registered its Node (read from etcd with no datastore flag: the environment).
      const nodes = await waitFor(
        "three Nodes in etcd",
        () => {
          const r = exec("node1", ["ocelot", "get", "nodes", "-o", "json"]);
          if (r.status !== 0) return undefined;
          const items = (JSON.parse(r.stdout).items ?? []) as {
            metadata: { name: string };
            spec: { bgp?: { ipv4Address?: string; asNumber?: number } };
          }[];
          return items.length === 3 ? items : undefined;
        },
        120_000,
        500,
      );
      expect(nodes.map((n) => n.metadata.name).sort()).toEqual([...NODES]);
      for (const [i, n] of NODES.entries()) {
        const node = nodes.find((x) => x.metadata.name === n);
        expect(node?.spec.bgp?.ipv4Address).toBe(`${fabric}.${11 + i}/24`);
      }
      const keys = execOk("etcd", [
        "etcdctl",
        "get",
        "--prefix",
        "/ocelot/resources/v3/nodes/",
        "--keys-only",
      ]);
      expect(keys.split("\n").filter(Boolean).sort()).toEqual(
        NODES.map((n) => `/ocelot/resources/v3/nodes/${n}`),
      );

      // Sessions: each node has the two others (iBGP) and the ToR (eBGP) Established...
      const tor = `${fabric}.3`;
      await waitFor(
        "every node's mesh and ToR sessions Established",
        () =>
          NODES.every((n, i) => {
            const r = exec(n, ["ocelot", "status", "--json"]);
            if (r.status !== 0) return false;
            const peers = JSON.parse(r.stdout).peers as {
              address: string;
              asn: number;
              state: string;
            }[];
            const want = new Map<string, number>([[tor, TOR_AS]]);
            for (const j of NODES.keys()) if (j !== i) want.set(`${fabric}.${11 + j}`, NODE_AS);
            return (
              peers.length === want.size &&
              peers.every((p) => want.get(p.address) === p.asn && p.state === "Established")
            );
          }),
        180_000,
        250,
      );
      // ...and the ToR has all three nodes Established, with their pod blocks once pods exist.
      const torEstablished = () => {
        const r = exec("tor", ["vtysh", "-c", "show bgp summary json"]);
        if (r.status !== 0) return false;
        const peers = JSON.parse(r.stdout).ipv4Unicast?.peers ?? {};
        return NODES.every((_, i) => peers[`${fabric}.${11 + i}`]?.state === "Established");
      };
      await waitFor("the ToR's three sessions Established", torEstablished, 120_000, 250);
      const established = (Date.now() - t0) / 1000;

      // Pods: a network namespace in each node container, wired by the real ocelot-cni. The runtime
      // (here the test, as kubelet and containerd on a node) runs the plugin with its own
      // privileges: a writable /proc/sys (a private mount) and setns into the pod's namespace.
      const conf = (node: string) =>
        JSON.stringify({
          cniVersion: "1.0.0",
          name: "k8s-pod-network",
          type: "ocelot-cni",
          datastore: `etcd://${fabric}.2:2379`,
          nodename: node,
          ipam: { type: "ocelot-ipam", ipv4_pools: [POOL] },
        });
      const cniArgs = (command: "ADD" | "DEL", pod: string) => [
        "unshare",
        "-m",
        "sh",
        "-c",
        `mount -o remount,rw,bind /proc/sys && exec env CNI_COMMAND=${command} CNI_CONTAINERID=${pod} CNI_NETNS=/run/netns/${pod} CNI_IFNAME=eth0 CNI_PATH=/usr/local/bin 'CNI_ARGS=K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod}' ocelot-cni`,
      ];
      const cni = (command: "ADD" | "DEL", node: string, pod: string) =>
        execOk(node, cniArgs(command, pod), { privileged: true, input: conf(node) });
      /** Where the time after the sessions goes: each pod's namespace, its ADD, the first ping. */
      const steps: string[] = [];
      let mark = Date.now();
      const step = (what: string) => {
        steps.push(`${what} ${((Date.now() - mark) / 1000).toFixed(1)} s`);
        mark = Date.now();
      };
      // The nodes' pods at the same time, as kubelets on three nodes would start them.
      const wired = await Promise.all(
        NODES.map(async (node) => {
          const name = `${RUN_PREFIX}-${node}-pod`;
          const p0 = Date.now();
          await execOkAsync(node, ["ip", "netns", "add", name], { privileged: true });
          const p1 = Date.now();
          const out = await execOkAsync(node, cniArgs("ADD", name), {
            privileged: true,
            input: conf(node),
          });
          const p2 = Date.now();
          const result = JSON.parse(out) as { ips: { address: string }[] };
          const ip = (result.ips[0]?.address ?? "").split("/")[0] as string;
          return {
            node,
            name,
            ip,
            took: `${node} netns ${((p1 - p0) / 1000).toFixed(1)} s + ADD ${((p2 - p1) / 1000).toFixed(1)} s`,
          };
        }),
      );
      step(`pods wired at once (${wired.map((w) => w.took).join(", ")})`);
      for (const { node, name, ip } of wired) {
        expect(ip, `${node}'s pod address`).toMatch(/^10\.244\./);
        pods.push({ node, name, ip });
        netnsInodes.add(
          execOk(node, ["stat", "-L", "-c", "%i", `/run/netns/${name}`], {
            privileged: true,
          }).trim(),
        );
      }
      const ping = (from: Pod, to: Pod) =>
        exec(from.node, ["ip", "netns", "exec", from.name, "ping", "-c", "1", "-W", "2", to.ip], {
          privileged: true,
        }).status === 0;
      const [a, b] = pods as [Pod, Pod];
      step("stat of the namespaces");
      await waitFor(`first pod ping ${a.node} -> ${b.node}`, () => ping(a, b), 120_000, 100);
      const firstPing = (Date.now() - t0) / 1000;
      step("first ping");

      // Every pod reaches every pod on the other nodes.
      for (const from of pods)
        for (const to of pods.filter((p) => p !== from))
          await waitFor(
            `ping ${from.node} -> ${to.node} (${to.ip})`,
            () => ping(from, to),
            60_000,
            200,
          );

      // The ToR learned each node's block over eBGP.
      const torRoutes = JSON.parse(
        execOk("tor", ["vtysh", "-c", "show bgp ipv4 unicast json"]),
      ).routes;
      for (const p of pods)
        expect(
          Object.keys(torRoutes).some((prefix) => prefix.endsWith("/26") && inPrefix(p.ip, prefix)),
          `the ToR has a /26 holding ${p.ip}`,
        ).toBe(true);

      // Receivers see the sender's own address (no NAT inside the cluster): a TCP listener in each
      // pod reports the peer address of one connection from the previous node's pod.
      for (const [i, to] of pods.entries()) {
        const from = pods[(i + pods.length - 1) % pods.length] as Pod;
        const seen = await sourceSeen(from, to);
        expect(seen, `${to.node}'s pod sees ${from.node}'s pod as`).toBe(from.ip);
      }

      console.log(
        `compose cluster (${NODES.length} nodes + ToR + etcd, fabric ${fabric}.0/24): up -d returned after ${upReturned.toFixed(1)} s; all BGP sessions Established ${established.toFixed(1)} s after up; first pod ping ${firstPing.toFixed(1)} s after up (pods wired after the sessions, the three at once, each step through podman exec: ${steps.join(", ")}); load average ${loadavg()
          .map((l) => l.toFixed(1))
          .join(" ")}`,
      );

      // DEL gives the addresses back.
      for (const p of pods) cni("DEL", p.node, p.name);
      const weps = JSON.parse(
        execOk("node1", ["ocelot", "get", "workloadendpoints", "-o", "json"]),
      );
      expect(weps.items ?? []).toEqual([]);
    },
    CLUSTER_MS,
  );

  /** Runs a one-connection TCP listener in `to`'s pod and connects from `from`'s pod. */
  async function sourceSeen(from: Pod, to: Pod): Promise<string> {
    const server = spawn(
      "podman",
      [
        "exec",
        "--privileged",
        compose.container(to.node),
        "ip",
        "netns",
        "exec",
        to.name,
        "node",
        "-e",
        `const s=require("net").createServer(c=>{console.log("SEEN "+c.remoteAddress.replace(/^::ffff:/,""));c.end();s.close()});s.listen(8080,()=>console.log("LISTENING"));setTimeout(()=>process.exit(2),60000)`,
      ],
      { env: podman.env, stdio: ["ignore", "pipe", "pipe"] },
    );
    servers.push(server);
    let out = "";
    server.stdout?.on("data", (d) => {
      out += String(d);
    });
    await waitFor(`listener in ${to.name}`, () => {
      if (server.exitCode !== null) throw new Error(`listener exited: ${out}`);
      return out.includes("LISTENING");
    });
    execOk(
      from.node,
      [
        "ip",
        "netns",
        "exec",
        from.name,
        "node",
        "-e",
        `const c=require("net").connect(8080,"${to.ip}");c.on("data",()=>{});c.on("end",()=>process.exit(0));c.on("error",e=>{console.error(e.message);process.exit(1)});setTimeout(()=>process.exit(3),30000)`,
      ],
      { privileged: true },
    );
    const m = await waitFor(`${to.name} to report the peer`, () => /SEEN (\S+)/.exec(out));
    return m[1] as string;
  }

  it("down leaves no container, network or namespace", async () => {
    expect(containerIds.length).toBeGreaterThan(0);
    compose.ok(["down", "--volumes", "--remove-orphans", "--timeout", "10"], HANG_MS * 2);
    downDone = true;
    const left = podman
      .ok(["ps", "-aq", "--filter", `label=com.docker.compose.project=${project}`])
      .split("\n")
      .filter(Boolean);
    expect(left).toEqual([]);
    const all = podman.ok(["ps", "-aq", "--no-trunc"]).split("\n");
    for (const id of containerIds) expect(all).not.toContain(id);
    expect(podman.ok(["network", "ls", "--format", "{{.Name}}"]).split("\n")).not.toContain(
      `${project}_fabric`,
    );
    if (bridge)
      expect(sh("ip", ["-j", "link", "show"]).includes(`"${bridge}"`), bridge).toBe(false);
    // Nodes', ToR's, etcd's and the pods' namespaces: no process holds one any more.
    await waitFor("every namespace of the cluster to be gone", () => {
      const held = hostNetnsInodes();
      return [...netnsInodes].every((ino) => !held.has(ino));
    });
    expect(sh("ip", ["netns", "list"])).not.toContain(RUN_PREFIX);
  });
});

function inPrefix(ip: string, prefix: string): boolean {
  const [net, len] = prefix.split("/") as [string, string];
  const n = (a: string) => a.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
  const size = 2 ** (32 - Number(len));
  return Math.floor(n(ip) / size) === Math.floor(n(net) / size);
}
