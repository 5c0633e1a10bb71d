// `ocelot install-cni`, the DaemonSet's init container as Calico's install-cni: puts the
// `ocelot-cni` and `ocelot-ipam` plugins into a CNI bin directory and writes the network's
// conflist (ocelot-cni with portmap chained) and its datastore setting (datastore_file.ts, with
// copies of the etcd TLS files, as Calico's calico-tls/) into a CNI conf directory, and, when the
// API server is known, the plugins' kubeconfig (Calico's calico-kubeconfig) named in the conflist. Every file
// is written to a temporary name and renamed (a runtime never reads half a file), only when its
// bytes or mode differ (an unchanged install touches nothing), and recorded in a manifest that
// `--uninstall` reads to remove exactly what was written. Owns: the plan (pure), what to copy
// (pluginFiles, the one place that knows how the installed plugins find the program), the
// writing and removal. Not: the plugins themselves.
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join, sep } from "node:path";
import { type DatastoreFile, renderDatastoreFile } from "./datastore_file.js";
import { PAYLOAD_DIR, payloadFiles } from "./payload.js";

export const DEFAULT_CONF_NAME = "10-ocelot.conflist";
export const DATASTORE_FILE_NAME = "ocelot-datastore";
export const TLS_DIR_NAME = "ocelot-tls";
/** The plugins' kubeconfig (Calico's calico-kubeconfig), when the API server is known. */
export const KUBECONFIG_NAME = "ocelot-kubeconfig";
/** The manifest of what was written (no .conf/.conflist/.json suffix: runtimes skip it). */
export const MANIFEST_NAME = ".ocelot-install";

export interface InstallSettings {
  binDir: string;
  confDir: string;
  /** The conf directory as the runtime on the host sees it (what the conflist names). */
  hostConfDir: string;
  confName: string;
  networkName: string;
  /** Written into the conflist when given; otherwise the plugin takes the host's name. */
  nodename?: string;
  mtu: number;
  logFilePath?: string;
  datastore: DatastoreFile;
  /** The etcd TLS files to copy next to the setting (their contents). */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  plugins: PluginFile[];
  /** The kubeconfig text the plugins read pods with (renderKubeconfig); none: not written. */
  kubeconfig?: string;
}

export interface PluginFile {
  /** Relative to the bin directory. */
  name: string;
  content: string | Buffer;
  /** Default 0755. */
  mode?: number;
}

export interface PlannedFile {
  path: string;
  content: string | Buffer;
  mode: number;
}

/**
 * What goes into the bin directory: the self-contained plugin (payload.ts): Node.js, its C
 * library, the plugins' bundles and the netlink addon under ocelot.d/<id>/, and a launcher per
 * plugin that runs them; nothing of the host but /bin/sh is used.
 */
export function pluginFiles(packageRoot: string, nodeBinary: string): PluginFile[] {
  return payloadFiles({ packageRoot, nodeBinary });
}

/** The conflist: ocelot-cni, then portmap chained for host ports. */
export function renderConflist(s: InstallSettings): string {
  const main: Record<string, unknown> = {
    type: "ocelot-cni",
    datastore_file: join(s.hostConfDir, DATASTORE_FILE_NAME),
    ...(s.nodename ? { nodename: s.nodename } : {}),
    mtu: s.mtu,
    ...(s.logFilePath ? { log_file_path: s.logFilePath } : {}),
    ...(s.kubeconfig !== undefined
      ? { kubernetes: { kubeconfig: join(s.hostConfDir, KUBECONFIG_NAME) } }
      : {}),
    ipam: { type: "ocelot-ipam" },
  };
  const conf = {
    name: s.networkName,
    cniVersion: "1.0.0",
    plugins: [main, { type: "portmap", snat: true, capabilities: { portMappings: true } }],
  };
  return `${JSON.stringify(conf, null, 2)}\n`;
}

/** Every file of an install, with its mode: binaries 0755, the conflist 0644, secrets 0600. */
export function planInstall(s: InstallSettings): PlannedFile[] {
  const files: PlannedFile[] = s.plugins.map((p) => ({
    path: join(s.binDir, p.name),
    content: p.content,
    mode: p.mode ?? 0o755,
  }));
  const ds: DatastoreFile = { ...s.datastore };
  const tls = s.tls ?? {};
  const tlsFiles: Array<[keyof typeof tls, keyof DatastoreFile, string]> = [
    ["ca", "etcd_ca_cert_file", "etcd-ca"],
    ["cert", "etcd_cert_file", "etcd-cert"],
    ["key", "etcd_key_file", "etcd-key"],
  ];
  for (const [k, field, name] of tlsFiles) {
    const content = tls[k];
    if (!content) continue;
    files.push({ path: join(s.confDir, TLS_DIR_NAME, name), content, mode: 0o600 });
    ds[field] = join(s.hostConfDir, TLS_DIR_NAME, name);
  }
  // 0600: the setting may carry the etcd password; the plugins run as root.
  files.push({
    path: join(s.confDir, DATASTORE_FILE_NAME),
    content: renderDatastoreFile(ds),
    mode: 0o600,
  });
  // 0600: the kubeconfig holds the service account's token.
  if (s.kubeconfig !== undefined)
    files.push({ path: join(s.confDir, KUBECONFIG_NAME), content: s.kubeconfig, mode: 0o600 });
  // Last: a runtime that sees the conflist finds everything it names already there.
  files.push({ path: join(s.confDir, s.confName), content: renderConflist(s), mode: 0o644 });
  return files;
}

/**
 * A kubeconfig for the API server at `server` with the service account's token and CA, as
 * Calico's install-cni writes calico-kubeconfig from the pod's mounted service account.
 */
export function renderKubeconfig(k: { server: string; caPem: string; token: string }): string {
  const q = (v: string) => JSON.stringify(v);
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: local",
    "  cluster:",
    `    server: ${q(k.server)}`,
    `    certificate-authority-data: ${q(Buffer.from(k.caPem).toString("base64"))}`,
    "users:",
    "- name: ocelot",
    "  user:",
    `    token: ${q(k.token.trim())}`,
    "contexts:",
    "- name: ocelot-context",
    "  context:",
    "    cluster: local",
    "    user: ocelot",
    "current-context: ocelot-context",
    "",
  ].join("\n");
}

const sha256 = (b: string | Buffer) => createHash("sha256").update(b).digest("hex");

function sameFile(f: PlannedFile): boolean {
  try {
    const st = statSync(f.path);
    if ((st.mode & 0o7777) !== f.mode) return false;
    const cur = readFileSync(f.path);
    return cur.equals(Buffer.isBuffer(f.content) ? f.content : Buffer.from(f.content));
  } catch {
    return false;
  }
}

/** Writes f through a temporary file in its directory and a rename (atomic for readers). */
function writeAtomic(f: PlannedFile): void {
  const tmp = join(f.path, "..", `.${basename(f.path)}.tmp-${process.pid}`);
  try {
    writeFileSync(tmp, f.content, { mode: f.mode });
    chmodSync(tmp, f.mode);
    renameSync(tmp, f.path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

export interface InstallReport {
  written: string[];
  unchanged: string[];
  /** Files of an earlier install that this one no longer writes, removed. */
  removed: string[];
}

interface Manifest {
  files: Array<{ path: string; sha256: string }>;
}

function readManifest(confDir: string): Manifest | undefined {
  try {
    const m = JSON.parse(readFileSync(join(confDir, MANIFEST_NAME), "utf8")) as Manifest;
    return Array.isArray(m.files) ? m : undefined;
  } catch {
    return undefined;
  }
}

/** Removes a file when it still holds what we wrote; true when it was removed (or gone). */
function removeIfOurs(path: string, sum: string): boolean {
  if (!existsSync(path)) return true;
  if (sha256(readFileSync(path)) !== sum) return false;
  rmSync(path, { force: true });
  removeEmptyPayloadDirs(path);
  return true;
}

/** After a payload file is removed: its directories up to ocelot.d itself, those now empty. */
function removeEmptyPayloadDirs(path: string): void {
  const mark = `${sep}${PAYLOAD_DIR}${sep}`;
  const at = path.lastIndexOf(mark);
  if (at < 0) return;
  const top = path.slice(0, at + mark.length - 1);
  for (let d = dirname(path); d.length >= top.length; d = dirname(d)) {
    try {
      rmdirSync(d);
    } catch {
      return; // not empty (or gone)
    }
  }
}

/** Writes the plan: changed files only, each atomically, then the manifest. */
export function applyInstall(s: InstallSettings): InstallReport {
  const plan = planInstall(s);
  const report: InstallReport = { written: [], unchanged: [], removed: [] };
  for (const f of plan) {
    mkdirSync(join(f.path, ".."), { recursive: true, mode: 0o755 });
    if (sameFile(f)) report.unchanged.push(f.path);
    else {
      writeAtomic(f);
      report.written.push(f.path);
    }
  }
  const now = new Set(plan.map((f) => f.path));
  for (const old of readManifest(s.confDir)?.files ?? []) {
    if (!now.has(old.path) && removeIfOurs(old.path, old.sha256)) report.removed.push(old.path);
  }
  if (report.removed.length > 0) removeEmptyTlsDir(s.confDir);
  const manifest: PlannedFile = {
    path: join(s.confDir, MANIFEST_NAME),
    content: `${JSON.stringify({ files: plan.map((f) => ({ path: f.path, sha256: sha256(f.content) })) }, null, 2)}\n`,
    mode: 0o600,
  };
  if (!sameFile(manifest)) writeAtomic(manifest);
  return report;
}

/**
 * Removes what the install recorded in confDir's manifest: each file that still holds what was
 * written (one changed since is left, and named), then the manifest and an empty TLS directory.
 */
export function uninstall(confDir: string): { removed: string[]; kept: string[] } {
  const m = readManifest(confDir);
  const out = { removed: [] as string[], kept: [] as string[] };
  if (!m) return out;
  for (const f of m.files) {
    if (removeIfOurs(f.path, f.sha256)) out.removed.push(f.path);
    else out.kept.push(f.path);
  }
  rmSync(join(confDir, MANIFEST_NAME), { force: true });
  removeEmptyTlsDir(confDir);
  return out;
}

function removeEmptyTlsDir(confDir: string): void {
  try {
    rmdirSync(join(confDir, TLS_DIR_NAME));
  } catch {
    // Not there, or not empty (a kept file).
  }
}
