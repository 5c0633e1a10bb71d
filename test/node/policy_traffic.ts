// Pods for the node daemon's policy tests: wired by the real `bin/ocelot-cni` in a node
// namespace and labelled app=<name> in their WorkloadEndpoints (as Kubernetes pod labels would
// be; CNI ADD does not carry them), an HTTP server on one, and the traffic probes the tests
// read verdicts from (curl and ping inside the pods' namespaces).
import { type ChildProcess, spawn } from "node:child_process";
import { applyResource, ResourceClient } from "../../src/api/client.js";
import { kindOf } from "../../src/api/registry.js";
import type { Datastore } from "../../src/datastore/types.js";
import { runSync } from "../helpers/limits.js";
import { Netns } from "../helpers/netns.js";
import { cni, netconf, podEnv } from "./harness.js";

/** The port serveHttp() listens on and connects() asks. */
export const PORT = 8080;

export interface Pod {
  ns: Netns;
  name: string;
  ip: string;
  iface: string;
  wep: string;
}

const WEP = kindOf("projectcalico.org/v3", "WorkloadEndpoint");

/** A NetworkPolicy selecting B that allows only app=a, on TCP PORT. */
export const B_FROM_A = {
  apiVersion: "projectcalico.org/v3",
  kind: "NetworkPolicy",
  metadata: { name: "b-from-a", namespace: "default" },
  spec: {
    selector: "app == 'b'",
    ingress: [
      {
        action: "Allow",
        protocol: "TCP",
        source: { selector: "app == 'a'" },
        destination: { ports: [PORT] },
      },
    ],
  },
};

/**
 * Pods a, b and c (namespaces `<prefix>a`...) added by CNI ADD on `node`, each labelled
 * app=<its letter> in its WorkloadEndpoint.
 */
export async function addLabelledPods(
  node: Netns,
  store: Datastore,
  url: string,
  nodename: string,
  pool: string,
  prefix: string,
): Promise<Record<"a" | "b" | "c", Pod>> {
  const client = new ResourceClient(store);
  const pods = {} as Record<"a" | "b" | "c", Pod>;
  for (const app of ["a", "b", "c"] as const) {
    const ns = Netns.create(`${prefix}${app}`);
    const name = `pod-${app}`;
    const r = await cni(node, "ADD", podEnv(ns, name), netconf(url, nodename, pool));
    if (r.code !== 0) throw new Error(`CNI ADD ${name}: ${r.stdout}${r.stderr}`);
    const res = JSON.parse(r.stdout);
    const ip = (res.ips[0].address as string).split("/")[0] as string;
    const iface = res.interfaces[0].name as string;
    const weps = (await client.list(WEP as NonNullable<typeof WEP>, "default")).items;
    const wep = weps.find((w) => (w.spec as { pod?: string }).pod === name);
    if (!wep) throw new Error(`no WorkloadEndpoint for ${name}`);
    const { resourceVersion: _rv, ...metadata } = wep.metadata;
    await applyResource(store, {
      ...wep,
      metadata: { ...metadata, labels: { ...metadata.labels, app } },
    });
    pods[app] = { ns, name, ip, iface, wep: wep.metadata.name };
  }
  return pods;
}

/** An HTTP server answering "ok" on PORT inside the pod (SIGKILL it when done). */
export function serveHttp(pod: Pod): ChildProcess {
  return spawn(
    "ip",
    [
      "netns",
      "exec",
      pod.ns.name,
      process.execPath,
      "-e",
      `require("http").createServer((q, r) => r.end("ok")).listen(${PORT})`,
    ],
    { stdio: "ignore" },
  );
}

/**
 * A TCP connect + HTTP GET from a pod: true when it got the answer. Where the test expects an
 * answer it tries up to 5 times, 10 s each (a loaded machine can be slow to answer); where it
 * expects a drop, one try of 1.5 s (a dropped packet never answers, however long one waits).
 */
export function connects(from: Netns, to: Pod, expected: boolean): boolean {
  return probe(
    expected,
    (wait) =>
      runSync("ip", [
        "netns",
        "exec",
        from.name,
        "curl",
        "-s",
        "--max-time",
        String(wait),
        `http://${to.ip}:${PORT}/`,
      ]),
    "ok",
  );
}

/** One ICMP echo from a pod (or the node), tried as connects() is. */
export function pings(from: Netns, to: Pod, expected: boolean): boolean {
  return probe(expected, (wait) =>
    runSync("ip", ["netns", "exec", from.name, "ping", "-c", "1", "-W", String(wait), to.ip]),
  );
}

function probe(
  expected: boolean,
  run: (waitSeconds: number) => { status: number | null; stdout: string },
  body?: string,
): boolean {
  for (let i = 0; i < (expected ? 5 : 1); i++) {
    const r = run(expected ? 10 : 1.5);
    if (r.status === 0 && (body === undefined || r.stdout === body)) return true;
  }
  return false;
}
