// `ocelot kube-controllers`: Calico's kube-controllers for an etcd-mode cluster (Namespaces and
// ServiceAccounts as Profiles, pod labels onto WorkloadEndpoints, Kubernetes NetworkPolicies into
// the datastore, deleted Nodes cleaned up), run until SIGTERM/SIGINT. Owns the flags and the
// output; the work is src/k8s/controllers.ts's.
import type { Command } from "commander";
import {
  addDatastoreOptions,
  type DatastoreCliOptions,
  openDatastoreFromCli,
} from "../datastore/open.js";
import { KubeError } from "../k8s/pod_reader.js";
import { CliError } from "./main.js";

type Opts = DatastoreCliOptions & { kubeconfig?: string; resyncPeriod?: string };

async function run(o: Opts): Promise<void> {
  const kubeconfig = o.kubeconfig ?? process.env.KUBECONFIG;
  if (!kubeconfig) throw new CliError("--kubeconfig (or $KUBECONFIG) is required", 2);
  const resyncS = Number(o.resyncPeriod ?? "300");
  if (!Number.isFinite(resyncS) || resyncS < 1)
    throw new CliError(`--resync-period: "${o.resyncPeriod}" is not a number of seconds ≥ 1`, 2);
  let store: Awaited<ReturnType<typeof openDatastoreFromCli>>;
  try {
    store = await openDatastoreFromCli(o);
  } catch (err) {
    throw new CliError((err as Error).message, err instanceof RangeError ? 2 : 1);
  }
  const { startKubeControllers } = await import("../k8s/controllers.js");
  const started = Date.now();
  let ctl: Awaited<ReturnType<typeof startKubeControllers>>;
  try {
    ctl = await startKubeControllers({ kubeconfig, store, resyncMs: resyncS * 1000 });
  } catch (err) {
    await store.close();
    if (err instanceof KubeError) throw new CliError(err.message);
    throw err;
  }
  void ctl.synced.then(() =>
    process.stderr.write(`kube-controllers: in sync (${Date.now() - started} ms after start)\n`),
  );
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
      .option("--resync-period <seconds>", "a full pass at least this often", "300"),
  ).action((o: Opts) => run(o));
}
