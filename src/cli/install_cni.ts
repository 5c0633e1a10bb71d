// `ocelot install-cni [--uninstall]`: the CNI plugins, conflist and datastore setting into a
// node's CNI directories (src/cni/install.ts), configured by flags and Calico's install-cni
// variables (CNI_NET_DIR, CNI_CONF_NAME, CNI_MTU, NODENAME, the datastore's, and
// KUBERNETES_SERVICE_HOST/PORT with the mounted service account for the plugins' kubeconfig).
// With --watch it stays running (Calico's install-cni with SLEEP=true, and calico-node's token
// refresher): every interval it reads the service account's token and CA and the TLS files again
// and rewrites what changed, so the plugins' kubeconfig follows the kubelet's rotation of the
// projected token; SIGTERM/SIGINT end it. Owns: reading the settings and the TLS files, the
// output. Not: what is written (src/cni/install.ts).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import {
  applyInstall,
  DEFAULT_CONF_NAME,
  pluginFiles,
  renderKubeconfig,
  uninstall,
} from "../cni/install.js";
import {
  addDatastoreOptions,
  type DatastoreCliOptions,
  DEFAULT_DATASTORE_URL,
} from "../datastore/cli_options.js";
import { NodeConfigError, resolveDatastoreSettings } from "../node/config.js";
import { CliError } from "./main.js";

const USAGE = 2;

type Opts = DatastoreCliOptions & {
  binDir?: string;
  confDir?: string;
  hostConfDir?: string;
  confName?: string;
  networkName?: string;
  nodename?: string;
  mtu?: string;
  logFilePath?: string;
  uninstall?: boolean;
  json?: boolean;
  watch?: boolean;
  watchInterval?: string;
  kubeApiServer?: string;
  serviceAccountDir?: string;
};

const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/**
 * The plugins' kubeconfig, as Calico's install-cni writes it: the API server from the flag or
 * the pod's KUBERNETES_SERVICE_HOST/PORT, the token and CA of its mounted service account. None
 * when no API server is known (the plugins then read no pods, as before).
 */
function kubeconfigOf(o: Opts, env: NodeJS.ProcessEnv): string | undefined {
  const host = env.KUBERNETES_SERVICE_HOST?.trim();
  const server =
    o.kubeApiServer ??
    (host
      ? `${env.KUBERNETES_SERVICE_PROTOCOL?.trim() || "https"}://${host.includes(":") ? `[${host}]` : host}:${env.KUBERNETES_SERVICE_PORT?.trim() || "443"}`
      : undefined);
  if (!server) return undefined;
  const dir = o.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  const read = (name: string) => {
    try {
      return readFileSync(join(dir, name), "utf8");
    } catch (err) {
      throw new CliError(
        `Cannot read the service account's ${name} "${join(dir, name)}" for the API server ${server}: ${(err as NodeJS.ErrnoException).code}`,
      );
    }
  };
  return renderKubeconfig({ server, token: read("token"), caPem: read("ca.crt") });
}

/** The package this command runs from (dist/cli/install_cni.js -> the package root). */
function packageRoot(): string {
  return fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");
}

const pick = (flag: string | undefined, env: string | undefined, dflt: string) =>
  flag ?? (env?.trim() ? env.trim() : dflt);

function readTls(path: string | undefined, what: string): Buffer | undefined {
  if (!path) return undefined;
  try {
    return readFileSync(path);
  } catch (err) {
    throw new CliError(
      `Cannot read the etcd ${what} "${path}": ${(err as NodeJS.ErrnoException).code}`,
    );
  }
}

async function run(o: Opts): Promise<void> {
  if (!o.watch) return installOnce(o);
  const seconds = Number(o.watchInterval ?? "60");
  if (o.uninstall || !Number.isFinite(seconds) || seconds < 1)
    throw new CliError(
      o.uninstall
        ? "--watch and --uninstall cannot be used together"
        : `--watch-interval: "${o.watchInterval}" is not a number of seconds ≥ 1`,
      USAGE,
    );
  installOnce(o);
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      try {
        installOnce(o, true);
      } catch (err) {
        // A token being rotated may be missing for a moment: said, and tried again.
        process.stderr.write(`ocelot: install-cni: ${(err as Error).message}\n`);
      }
    }, seconds * 1000);
    const stop = () => {
      clearInterval(timer);
      resolve();
    };
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
}

/** One install; `quiet`: print only when something was written or removed (a --watch pass). */
function installOnce(o: Opts, quiet = false): void {
  const env = process.env;
  const binDir = pick(o.binDir, env.CNI_BIN_DIR, "/opt/cni/bin");
  const confDir = pick(o.confDir, env.CNI_NET_DIR, "/etc/cni/net.d");
  const print = (v: unknown, text: string) =>
    process.stdout.write(o.json ? `${JSON.stringify(v, null, 2)}\n` : text);
  if (o.uninstall) {
    const r = uninstall(confDir);
    const kept = r.kept.length ? `; left (changed since): ${r.kept.join(", ")}` : "";
    print(
      r,
      `Removed ${r.removed.length} file(s)${r.removed.length ? `: ${r.removed.join(", ")}` : ""}${kept}\n`,
    );
    return;
  }
  // The conflist names paths as the host sees them: CNI_NET_DIR, else conf-dir without /host.
  const hostConfDir = pick(o.hostConfDir, env.CNI_NET_DIR, confDir.replace(/^\/host(?=\/)/, ""));
  const mtuText = pick(o.mtu, env.CNI_MTU, "1500");
  const mtu = Number(mtuText);
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535)
    throw new CliError(
      `${o.mtu ? "--mtu" : "CNI_MTU"}: "${mtuText}" is not an MTU (68..65535)`,
      USAGE,
    );
  const confName = pick(o.confName, env.CNI_CONF_NAME, DEFAULT_CONF_NAME);
  if (!/^[A-Za-z0-9._-]+\.conflist$/.test(confName))
    throw new CliError(
      `${o.confName ? "--conf-name" : "CNI_CONF_NAME"}: "${confName}" is not a file name ending in .conflist`,
      USAGE,
    );
  let ds: ReturnType<typeof resolveDatastoreSettings>;
  try {
    const flags: Record<string, unknown> = {};
    for (const k of ["datastore", "etcdCa", "etcdCert", "etcdKey"] as const)
      if (o[k] !== undefined) flags[k] = o[k];
    ds = resolveDatastoreSettings({ flags, env, file: {} });
  } catch (err) {
    if (err instanceof NodeConfigError) throw new CliError(err.message, USAGE);
    throw err;
  }
  let password = env.OCELOT_ETCD_PASSWORD || undefined;
  if (o.etcdPasswordFile) {
    try {
      password = readFileSync(o.etcdPasswordFile, "utf8").replace(/\r?\n$/, "");
    } catch (err) {
      throw new CliError(
        `Cannot read the etcd password file "${o.etcdPasswordFile}": ${(err as NodeJS.ErrnoException).code}`,
      );
    }
  }
  const username = o.etcdUsername ?? (env.OCELOT_ETCD_USERNAME || undefined);
  const nodename = o.nodename ?? (env.NODENAME?.trim() || undefined);
  const kubeconfig = kubeconfigOf(o, env);
  const report = applyInstall({
    ...(kubeconfig !== undefined ? { kubeconfig } : {}),
    binDir,
    confDir,
    hostConfDir,
    confName,
    networkName: o.networkName ?? "k8s-pod-network",
    ...(nodename ? { nodename } : {}),
    mtu,
    ...(o.logFilePath ? { logFilePath: o.logFilePath } : {}),
    datastore: {
      datastore: ds.datastore ?? DEFAULT_DATASTORE_URL,
      ...(username ? { etcd_username: username } : {}),
      ...(password ? { etcd_password: password } : {}),
    },
    tls: {
      ca: readTls(ds.etcdCa, "CA certificate"),
      cert: readTls(ds.etcdCert, "client certificate"),
      key: readTls(ds.etcdKey, "client key"),
    },
    plugins: pluginFiles(packageRoot(), process.execPath),
  });
  if (quiet && report.written.length === 0 && report.removed.length === 0) return;
  const lines = [
    ...report.written.map((p) => `written   ${p}`),
    ...(quiet ? [] : report.unchanged.map((p) => `unchanged ${p}`)),
    ...report.removed.map((p) => `removed   ${p}`),
  ];
  print(report, `${lines.join("\n")}\n`);
}

export function register(program: Command): void {
  const cmd = program
    .command("install-cni")
    .description(
      "install the CNI plugins, the conflist (portmap chained) and the datastore setting into a node's CNI directories; --uninstall removes what it wrote",
    )
    .option("--bin-dir <dir>", "CNI bin directory ($CNI_BIN_DIR, default /opt/cni/bin)")
    .option(
      "--conf-dir <dir>",
      "CNI conf directory written to ($CNI_NET_DIR, default /etc/cni/net.d)",
    )
    .option(
      "--host-conf-dir <dir>",
      "the conf directory as the host's runtime sees it, named in the conflist ($CNI_NET_DIR; default --conf-dir without a leading /host)",
    )
    .option(
      "--conf-name <name>",
      `the conflist's file name ($CNI_CONF_NAME, default ${DEFAULT_CONF_NAME})`,
    )
    .option("--network-name <name>", "the network's name (default k8s-pod-network)")
    .option(
      "--nodename <name>",
      "the node name the plugins use ($NODENAME; default: the host's name)",
    )
    .option("--mtu <mtu>", "pod interface MTU ($CNI_MTU, default 1500)")
    .option("--log-file-path <path>", "the plugins' log file (default /var/log/ocelot/cni/cni.log)")
    .option(
      "--kube-api-server <url>",
      "write the plugins' kubeconfig for this API server (default: from $KUBERNETES_SERVICE_HOST/PORT when set; none otherwise)",
    )
    .option(
      "--service-account-dir <dir>",
      `the service account's token and ca.crt for the kubeconfig (default ${SERVICE_ACCOUNT_DIR})`,
    )
    .option("--uninstall", "remove the files an earlier install wrote (those unchanged since)")
    .option(
      "--watch",
      "stay running: rewrite what changes (the service account's rotated token into the kubeconfig, the TLS files) every --watch-interval, until SIGTERM",
    )
    .option("--watch-interval <seconds>", "how often --watch looks (default 60)")
    .option("--json", "print what was done as JSON");
  addDatastoreOptions(cmd).action((o: Opts) => run(o));
}
