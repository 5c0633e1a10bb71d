// `ocelot kube-controllers`: Calico's kube-controllers for an etcd-mode cluster (Namespaces and
// ServiceAccounts as Profiles, pod labels onto WorkloadEndpoints, Kubernetes NetworkPolicies into
// the datastore, deleted Nodes cleaned up), run until SIGTERM/SIGINT, while it holds the datastore
// lease `kube-controllers` (src/k8s/elected.ts: the same one `ocelot node run --kubeconfig`
// campaigns for, so one runs in the cluster). Owns the flags and the output; the work is
// src/k8s/controllers.ts's.
import { hostname } from "node:os";
import type { Command } from "commander";
import {
  addDatastoreOptions,
  type DatastoreCliOptions,
  openDatastoreFromCli,
} from "../datastore/open.js";
import { CliError } from "./main.js";

type Opts = DatastoreCliOptions & { kubeconfig?: string; resyncPeriod?: string; leaseTtl?: string };

async function run(o: Opts): Promise<void> {
  const kubeconfig = o.kubeconfig ?? process.env.KUBECONFIG;
  if (!kubeconfig) throw new CliError("--kubeconfig (or $KUBECONFIG) is required", 2);
  const resyncS = Number(o.resyncPeriod ?? "300");
  if (!Number.isFinite(resyncS) || resyncS < 1)
    throw new CliError(`--resync-period: "${o.resyncPeriod}" is not a number of seconds ≥ 1`, 2);
  const ttlMs = Number(o.leaseTtl ?? "15") * 1000;
  if (!Number.isFinite(ttlMs) || ttlMs < 1000)
    throw new CliError(`--lease-ttl: "${o.leaseTtl}" is not a number of seconds ≥ 1`, 2);
  let store: Awaited<ReturnType<typeof openDatastoreFromCli>>;
  try {
    store = await openDatastoreFromCli(o);
  } catch (err) {
    throw new CliError((err as Error).message, err instanceof RangeError ? 2 : 1);
  }
  const { runElectedKubeControllers } = await import("../k8s/elected.js");
  const started = Date.now();
  // The same datastore lease as `ocelot node run --kubeconfig`: one runs, here or on a node.
  const ctl = runElectedKubeControllers({
    store,
    kubeconfig,
    identity: `${hostname()}/kube-controllers-${process.pid}`,
    ttlMs,
    resyncMs: resyncS * 1000,
    log: (l) => process.stderr.write(`${l}\n`),
    onStarted: (c) =>
      void c.synced.then(() =>
        process.stderr.write(
          `kube-controllers: in sync (${Date.now() - started} ms after start)\n`,
        ),
      ),
  });
  await new Promise<void>((resolve) => {
    const stop = () => {
      const hard = setTimeout(() => process.exit(1), 10_000);
      hard.unref();
      void ctl
        .stop()
        .then(() => store.close())
        .finally(() => {
          resolve();
          setImmediate(() => process.exit(process.exitCode ?? 0));
        });
    };
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
}

export function register(program: Command): void {
  addDatastoreOptions(
    program
      .command("kube-controllers")
      .description(
        "keep the datastore in step with Kubernetes: namespace and service-account Profiles, pod labels on endpoints, NetworkPolicies, deleted Nodes",
      )
      .option("--kubeconfig <file>", "kubeconfig of the API server ($KUBECONFIG)")
      .option("--resync-period <seconds>", "a full pass at least this often", "300")
      .option(
        "--lease-ttl <seconds>",
        "the datastore lease shared with `ocelot node run --kubeconfig`: another takes over this long after this one stops renewing",
        "15",
      ),
  ).action((o: Opts) => run(o));
}
