// A handed-off ADD whose IPAM plugin is not ours (`ipam.type` another executable in CNI_PATH):
// the node daemon (`ocelot node run`, serving cni.sock in a node namespace) execs it as the CNI
// spec says, and its event loop keeps turning while the plugin runs (BGP keepalives, BFD, the
// FIB and other calls share it). The plugin is a slow stand-in for Debian's `host-local`: a
// script that records when it starts, waits until the test releases it (at least 2 s; bounded at
// 20 s), records when it ends and then is `host-local`. While it waits, the daemon's status
// socket answers (its "node" command): an answer arriving between the plugin's start and its end is the proof (the
// build before ran the plugin with spawnSync: no answer until the plugin had exited). The ADD's
// result is host-local's, the pod gets the address, the call ran in the daemon (its metric),
// and DEL frees host-local's lease. `ocelot-ipam` exec'd from a handed-off call
// (OCELOT_CNI_IPAM_EXEC=1), 4 ADDs at once (the daemon's default bound on calls at once): each
// runs itself (OCELOT_CNI_HANDOFF=0 in its environment) instead of handing its call back to the
// daemon, where it would wait for a slot its own caller holds. An IPAM error JSON reaches the runtime as the plugin wrote it,
// and a crash as error 102 with its exit status and first line (the build before said "spawnSync
// … EPIPE" instead when the plugin exited without reading its stdin).
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { queryStatus } from "../../src/bgp/status.js";
import { SqliteDatastore } from "../../src/datastore/sqlite.js";
import { statusSocketFor } from "../../src/lib/status_socket_path.js";
import { runOcelotCni } from "../helpers/cni.js";
import { Netns, skipWithReason, waitFor } from "../helpers/netns.js";
import { putPool } from "../ipam/helpers.js";
import { daemonTestsUnavailable, type NodeProcess } from "../node/harness.js";
import {
  closeHandoffLab,
  installCni,
  scrapeNodeMetrics,
  startHandoffDaemon,
} from "./handoff_node.js";

const HOST_LOCAL = "/usr/lib/cni/host-local";
const reason =
  daemonTestsUnavailable() ??
  (existsSync(HOST_LOCAL)
    ? undefined
    : `${HOST_LOCAL} missing (Debian's containernetworking-plugins)`);
const skip = skipWithReason("CNI hand-off with an exec'd IPAM plugin", reason);

const SUBNET = "10.81.0.0/24";

describe.skipIf(skip)("CNI hand-off: an exec'd IPAM plugin does not block the daemon", () => {
  let dir: string;
  let binDir: string;
  let ipamDir: string;
  let url: string;
  let node: Netns;
  let daemon: NodeProcess | undefined;
  const pods: Netns[] = [];
  const port = 20_000 + Math.floor(Math.random() * 20_000);

  const conf = (ipamType: string) => ({
    cniVersion: "1.0.0",
    name: "k8s-pod-network",
    type: "ocelot-cni",
    datastore: url,
    nodename: "node-x",
    mtu: 1450,
    ipam: { type: ipamType, subnet: SUBNET, dataDir: join(dir, "host-local") },
  });
  const env = (pod: Netns, name: string) => ({
    CNI_CONTAINERID: `ctr-${name}`,
    CNI_NETNS: `/run/netns/${pod.name}`,
    CNI_IFNAME: "eth0",
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=team-x;K8S_POD_NAME=${name}`,
    CNI_PATH: `${binDir}:${ipamDir}`,
  });
  const installed = (command: string, e: Record<string, string>, c: unknown) =>
    runOcelotCni(node, command, e, c, join(binDir, "ocelot-cni"));
  const scrape = (): string => scrapeNodeMetrics(node, port);
  const metric = (text: string, re: RegExp) => Number(re.exec(text)?.[1] ?? Number.NaN);
  const handoffsDone = (text: string) =>
    metric(
      text,
      /^ocelot_cni_handoff_seconds_count\{plugin="ocelot-cni",command="ADD",outcome="done"\} (\d+)$/m,
    );
  /** The realtime clock in ms that a marker file of the slow plugin holds (date +%s%N). */
  const marker = (name: string): number | undefined => {
    const p = join(ipamDir, name);
    return existsSync(p) ? Number(readFileSync(p, "utf8").trim()) / 1e6 : undefined;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ocelot-handoff-ipam-"));
    binDir = join(dir, "bin");
    ipamDir = join(dir, "ipam");
    mkdirSync(ipamDir);
    url = `file:${join(dir, "store.db")}`;
    const store = new SqliteDatastore(join(dir, "store.db"));
    await putPool(store, "xpool", "10.82.0.0/24", { blockSize: 26 });
    await store.close();
    // The slow stand-in for host-local (start and end marked with the realtime clock).
    writeFileSync(
      join(ipamDir, "slow-ipam"),
      `#!/bin/sh
d=$(dirname "$0")
date +%s%N > "$d/.started" && mv "$d/.started" "$d/started.$CNI_COMMAND"
i=0
while [ ! -e "$d/release" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
date +%s%N > "$d/.ended" && mv "$d/.ended" "$d/ended.$CNI_COMMAND"
exec ${HOST_LOCAL}
`,
      { mode: 0o755 },
    );
    writeFileSync(
      join(ipamDir, "error-ipam"),
      `#!/bin/sh
cat > /dev/null
echo '{"cniVersion":"1.0.0","code":11,"msg":"no room just now","details":"slow-ipam test"}'
exit 1
`,
      { mode: 0o755 },
    );
    writeFileSync(
      join(ipamDir, "crash-ipam"),
      `#!/bin/sh
echo "crash-ipam: something broke" >&2
echo "second line" >&2
exit 3
`,
      { mode: 0o755 },
    );
    installCni(dir, binDir, url);
    node = Netns.create("xnode");
    daemon = await startHandoffDaemon(node, "node-x", url, port);
  }, 120_000);

  afterAll(async () => {
    await closeHandoffLab(daemon, pods, node, dir);
  });

  it("the status socket answers while the IPAM plugin runs; the ADD is host-local's; DEL frees it", async () => {
    const pod = Netns.create("xpod");
    pods.push(pod);
    const statusSock = statusSocketFor(node.name);
    await queryStatus(statusSock, "node", 60_000);
    const before = handoffsDone(scrape()) || 0;
    const adding = installed("ADD", env(pod, "slow"), conf("slow-ipam"));
    await waitFor(
      "the slow IPAM plugin started",
      () => marker("started.ADD") !== undefined,
      60_000,
      20,
    );
    const started = marker("started.ADD") as number;
    // Poll the status socket while the plugin waits; released 2 s after its start at the
    // earliest, and only once an answer came (or the plugin ended by itself: its 20 s bound).
    const answers: number[] = [];
    let polling = true;
    const poll = (async () => {
      while (polling) {
        await queryStatus(statusSock, "node", 60_000);
        answers.push(Date.now());
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await waitFor(
      "a status answer or the plugin's end",
      () => answers.some((t) => t > started) || marker("ended.ADD") !== undefined,
      60_000,
      20,
    );
    const wait = 2000 - (Date.now() - started);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    writeFileSync(join(ipamDir, "release"), "");
    const add = await adding;
    polling = false;
    await poll;
    const ended = marker("ended.ADD") as number;
    const during = answers.filter((t) => t > started && t < ended);
    const gaps = answers.slice(1).map((t, i) => t - (answers[i] as number));
    const text = scrape();
    console.log(
      `hand-off with an exec'd IPAM plugin: it ran ${Math.round(ended - started)} ms; status answers while it ran: ${during.length} (first ${during.length ? Math.round((during[0] as number) - started) : "-"} ms after its start); longest gap between answers ${gaps.length ? Math.max(...gaps) : "-"} ms; the daemon's worst event-loop delay since start ${metric(text, /^ocelot_event_loop_delay_max_seconds (\S+)$/m)} s (load ${readFileSync("/proc/loadavg", "utf8").split(" ")[0]})`,
    );
    expect(add.code, `${add.stdout}${add.stderr}${daemon?.log}`).toBe(0);
    expect(during.length, "status answers between the plugin's start and its end").toBeGreaterThan(
      0,
    );
    // host-local's result, run in the daemon.
    expect(handoffsDone(text)).toBe(before + 1);
    const ip = (JSON.parse(add.stdout) as { ips: { address: string }[] }).ips[0]?.address;
    // Calico's way: the pod's address as a /32 whatever host-local's subnet.
    expect(ip).toMatch(/^10\.81\.0\.\d+\/32$/);
    const podAddrs = (
      JSON.parse(pod.exec("ip", "-j", "-4", "addr", "show", "dev", "eth0")) as {
        addr_info: { local: string }[];
      }[]
    )[0]?.addr_info.map((a) => a.local);
    expect(podAddrs).toEqual([ip?.split("/")[0]]);
    const leases = () =>
      readdirSync(join(dir, "host-local", "k8s-pod-network")).filter((f) => /^\d/.test(f));
    expect(leases()).toEqual([ip?.split("/")[0]]);
    // DEL through the daemon (the plugin released: it runs at once) frees host-local's lease.
    const del = await installed("DEL", env(pod, "slow"), conf("slow-ipam"));
    expect(del.code, `${del.stdout}${del.stderr}`).toBe(0);
    expect(leases()).toEqual([]);
  });

  it("ocelot-ipam exec'd from handed-off calls (4 at once) runs itself, never back into the daemon", async () => {
    const before = scrape();
    const count = (text: string, plugin: string, outcome: string) =>
      metric(
        text,
        new RegExp(
          `^ocelot_cni_handoff_seconds_count\\{plugin="${plugin}",command="ADD",outcome="${outcome}"\\} (\\d+)$`,
          "m",
        ),
      ) || 0;
    const c = {
      ...conf("ocelot-ipam"),
      ipam: { type: "ocelot-ipam", ipv4_pools: ["xpool"], assign_ipv6: false },
    };
    const names = ["e1", "e2", "e3", "e4"];
    const ps = names.map((n) => Netns.create(`x${n}`));
    pods.push(...ps);
    const t0 = Date.now();
    const adds = await Promise.all(
      names.map((n, i) =>
        installed("ADD", { ...env(ps[i] as Netns, n), OCELOT_CNI_IPAM_EXEC: "1" }, c),
      ),
    );
    console.log(`hand-off, ocelot-ipam exec'd, 4 ADDs at once: all done ${Date.now() - t0} ms`);
    for (const a of adds) expect(a.code, `${a.stdout}${a.stderr}`).toBe(0);
    const ips = adds.map(
      (a) => (JSON.parse(a.stdout) as { ips: { address: string }[] }).ips[0]?.address,
    );
    for (const ip of ips) expect(ip).toMatch(/^10\.82\.0\.\d+\/32$/);
    expect(new Set(ips).size).toBe(4);
    const after = scrape();
    expect(count(after, "ocelot-cni", "done") - count(before, "ocelot-cni", "done")).toBe(4);
    expect(count(after, "ocelot-ipam", "done") - count(before, "ocelot-ipam", "done")).toBe(0);
    for (const [i, n] of names.entries()) {
      const del = await installed(
        "DEL",
        { ...env(ps[i] as Netns, n), OCELOT_CNI_IPAM_EXEC: "1" },
        c,
      );
      expect(del.code, `${del.stdout}${del.stderr}`).toBe(0);
    }
  });

  it("an IPAM error reaches the runtime as the plugin wrote it; a crash as 102 with its first line", async () => {
    const pod = Netns.create("xpod2");
    pods.push(pod);
    const err = await installed("ADD", env(pod, "err"), conf("error-ipam"));
    expect(err.code).toBe(1);
    expect(JSON.parse(err.stdout)).toMatchObject({
      code: 11,
      msg: "no room just now",
      details: "slow-ipam test",
    });
    const crash = await installed("ADD", env(pod, "crash"), conf("crash-ipam"));
    expect(crash.code).toBe(1);
    const out = JSON.parse(crash.stdout) as { code: number; msg: string };
    expect(out.code).toBe(102);
    expect(out.msg).toBe(
      'IPAM plugin "crash-ipam" ADD failed (exit 3): crash-ipam: something broke',
    );
    // No veth was left behind for the pod.
    expect(pod.exec("ip", "-j", "link", "show")).not.toContain('"eth0"');
  });
});
