// The self-contained CNI plugin `ocelot install-cni` puts on a host that has neither Node.js nor
// the Ocelot package (a Kubernetes node, from the DaemonSet's init container): the Node.js
// binary that runs the install, the plugins' bundles with their code cache, the native netlink
// addon and the few modules they load at run time, and every shared library of these (glibc's
// dynamic loader included), found by asking that loader (`ld.so --list`, what ldd does). The
// plugins spawn no program of the host (rtnetlink from their own process, pod_netlink.ts). The installed launchers run each binary through the copied loader with the copied
// libraries (`ld.so --library-path`), so the host's C library, its version and its libstdc++
// do not matter; the host needs /bin/sh and a Linux kernel of the same architecture. Owns: the
// list of files (relative path, content, mode) and the launcher scripts. Not: writing them
// (install.ts).
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { SUPPORTED_VERSIONS } from "./ipam_plugin.js";

/** The directory beside the launchers that holds every version of the payload. */
export const PAYLOAD_DIR = "ocelot.d";
/** The hand-off shim inside a payload version's directory. */
const SHIM = "app/native/build/Release/ocelot-cni-shim";
/** The plugins a launcher is written for. */
export const PAYLOAD_PLUGINS = ["ocelot-cni", "ocelot-ipam"] as const;

/**
 * The modules the plugin bundles load from node_modules at run time (scripts/build.mjs keeps
 * them external), only the files that run: better-sqlite3 (the embedded store) with the
 * packages it requires (etcd3 is all in the bundles, its rpc.proto compiled in by
 * scripts/build.mjs); the same as scripts/externals.mjs names for the plugins.
 */
const PAYLOAD_MODULES: Array<{ name: string; paths: string[] }> = [
  {
    name: "better-sqlite3",
    paths: ["package.json", "lib", "build/Release/better_sqlite3.node"],
  },
  { name: "bindings", paths: ["package.json", "bindings.js"] },
  { name: "file-uri-to-path", paths: ["package.json", "index.js"] },
];

export interface PayloadFile {
  /** Relative to the CNI bin directory. */
  name: string;
  content: Buffer | string;
  mode: number;
}

export class PayloadError extends Error {}

/** Every file under dir (sorted, relative paths). */
function filesUnder(dir: string, rel = ""): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true }).sort((a, b) =>
    a.name < b.name ? -1 : 1,
  )) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...filesUnder(dir, r));
    else out.push(r);
  }
  return out;
}

/** The dynamic loader of this process (it loaded the Node.js running us): from /proc/self/maps. */
export function runningLoader(): string {
  const maps = readFileSync("/proc/self/maps", "utf8");
  const m = /\s(\/\S*\/ld-linux[^/\s]*\.so(?:\.\d+)*)$/m.exec(maps);
  if (!m?.[1])
    throw new PayloadError("cannot find the dynamic loader (ld-linux) in /proc/self/maps");
  return m[1];
}

/**
 * The shared libraries an ELF file needs, as the loader resolves them: soname -> path.
 * Parses `ld.so --list FILE` (the lines "soname => /path (0x…)"; the vDSO has no file).
 */
export function parseLoaderList(text: string): Map<string, string> {
  const libs = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^\s*(\S+)\s+=>\s+(\/\S+)\s+\(0x[0-9a-f]+\)\s*$/.exec(line);
    if (m?.[1] && m[2] && !m[1].startsWith("/")) libs.set(m[1], m[2]);
    else if (/=>\s*not found/.test(line))
      throw new PayloadError(`a library is missing: ${line.trim()}`);
  }
  return libs;
}

function librariesOf(loader: string, file: string): Map<string, string> {
  const r = spawnSync(loader, ["--list", file], { encoding: "utf8", timeout: 30_000 });
  if (r.status !== 0)
    throw new PayloadError(
      `${loader} --list ${file} failed: ${(r.stderr || r.error?.message || "").trim()}`,
    );
  return parseLoaderList(r.stdout);
}

/** The launcher: one binary of the payload run through the payload's loader and libraries. */
function loaderExec(dirExpr: string, loaderName: string, target: string): string {
  return `exec "${dirExpr}/lib/${loaderName}" --library-path "${dirExpr}/lib" ${target} "$@"`;
}

/**
 * VERSION answered by the launcher itself, without Node.js: a CNI runtime built on libcni
 * (podman, CRI-O; containerd's go-cni) asks every plugin of a network for VERSION before each
 * ADD and DEL, with stdin exactly `{"cniVersion":"<its version>"}`, and a Node.js start costs
 * ~0.1–0.4 s where a Go plugin answers in milliseconds. The reply is the one the plugin's own
 * VERSION gives (`cniCommand` in ipam_plugin.ts: the requested version when supported, else
 * 1.0.0, and the supported list), byte for byte; any other stdin, or OCELOT_BUNDLE_REPORT set
 * (it asks the bundle loader to report), goes to the plugin as read. Needs only /bin/sh.
 */
function versionFastPath(pluginExec: string): string[] {
  const list = SUPPORTED_VERSIONS.map((v) => `"${v}"`).join(",");
  return [
    `if [ "$CNI_COMMAND" = VERSION ] && [ -z "\${OCELOT_BUNDLE_REPORT:-}" ]; then`,
    "  s=",
    `  while IFS= read -r l || [ -n "$l" ]; do s="$s$l`,
    `"; done`,
    // The version asked for: only when stdin is that one key (its value digits and dots).
    `  v=\${s#'{"cniVersion":"'}; v=\${v%'"}`,
    `'}`,
    `  case "$s" in '{"cniVersion":"'*) ;; *) v= ;; esac`,
    `  case "$v" in ''|*[!0-9.]*) ;; *)`,
    `    case "$v" in ${SUPPORTED_VERSIONS.join("|")}) ;; *) v=1.0.0 ;; esac`,
    `    printf '{"cniVersion":"%s","supportedVersions":[${list}]}\\n' "$v"`,
    "    exit 0 ;;",
    "  esac",
    `  printf '%s' "$s" | ${pluginExec.replace(/^exec /, "")}`,
    "  exit $?",
    "fi",
  ];
}

export interface PayloadInputs {
  /** The Ocelot package root (bin/, dist/bundle/, node_modules/). */
  packageRoot: string;
  /** The Node.js binary to copy (the one running the install). */
  nodeBinary: string;
  /** The dynamic loader (default: this process's). */
  loader?: string;
}

/**
 * The payload: `ocelot.d/<id>/…` (id: a digest of every file, so a new version goes into a new
 * directory and the launchers switch to it when they are rewritten, last) and one launcher per
 * plugin. Launchers come last in the list.
 */
export function payloadFiles(inp: PayloadInputs): PayloadFile[] {
  const loader = inp.loader ?? runningLoader();
  const loaderName = basename(loader);
  const files: PayloadFile[] = [];
  const add = (name: string, from: string, mode?: number) => {
    const st = statSync(from);
    files.push({
      name,
      content: readFileSync(from),
      mode: mode ?? (st.mode & 0o111 ? 0o755 : 0o644),
    });
  };
  const root = inp.packageRoot;

  // The program: the launchers' scripts, the bundles and their code cache (made by this Node.js).
  add("app/package.json", join(root, "package.json"), 0o644);
  add("app/bin/package.json", join(root, "bin/package.json"), 0o644); // CommonJS
  add("app/bin/run_bundle.js", join(root, "bin/run_bundle.js"), 0o644);
  for (const p of PAYLOAD_PLUGINS) {
    add(`app/bin/${p}`, join(root, "bin", p), 0o755);
    const bundle = join(root, "dist/bundle", `${p}.cjs`);
    if (!existsSync(bundle))
      throw new PayloadError(
        `${bundle} is missing: the plugins are installed from their bundles (npm run build)`,
      );
    add(`app/dist/bundle/${p}.cjs`, bundle, 0o644);
    if (existsSync(`${bundle}.cache`))
      add(`app/dist/bundle/${p}.cjs.cache`, `${bundle}.cache`, 0o644);
  }
  // `@kubernetes/client-node`, bundled alone (scripts/build.mjs): read when a kubeconfig is given.
  const kube = join(root, "dist/bundle/kubernetes-client-node.cjs");
  if (existsSync(kube)) add("app/dist/bundle/kubernetes-client-node.cjs", kube, 0o644);
  // The netlink addon, where the bundles find it (../../native/ from dist/bundle/).
  const addon = join(root, "native/build/Release/ocelot_netlink.node");
  if (!existsSync(addon)) throw new PayloadError(`${addon} is missing (npm run build)`);
  add("app/native/build/Release/ocelot_netlink.node", addon, 0o644);
  // The plugins' first process: hands the call to the node daemon (native/cni_shim.c).
  const shim = join(root, "native/build/Release/ocelot-cni-shim");
  if (!existsSync(shim)) throw new PayloadError(`${shim} is missing (npm run build)`);
  add(SHIM, shim, 0o755);
  const elf = [inp.nodeBinary, addon, shim];
  for (const m of PAYLOAD_MODULES) {
    const dir = join(root, "node_modules", m.name);
    for (const rel of m.paths) {
      const from = join(dir, rel);
      if (!existsSync(from)) throw new PayloadError(`${from} is missing (npm ci)`);
      const list = statSync(from).isDirectory()
        ? filesUnder(from).map((f) => `${rel}/${f}`)
        : [rel];
      for (const f of list) {
        add(`app/node_modules/${m.name}/${f}`, join(dir, f), 0o644);
        if (f.endsWith(".node")) elf.push(join(dir, f));
      }
    }
  }
  // Node.js and every library of it and the addons, by soname; the loader itself.
  add("node", inp.nodeBinary, 0o755);
  const libs = new Map<string, string>();
  for (const f of elf) for (const [so, path] of librariesOf(loader, f)) libs.set(so, path);
  libs.delete(loaderName);
  for (const [so, path] of [...libs].sort()) add(`lib/${so}`, path, 0o755);
  add(`lib/${loaderName}`, loader, 0o755);

  const digest = createHash("sha256");
  for (const f of files) digest.update(`${f.name}\0${f.mode}\0`).update(f.content);
  const id = digest.digest("hex").slice(0, 12);
  const out = files.map((f) => ({ ...f, name: `${PAYLOAD_DIR}/${id}/${f.name}` }));
  const nodeVersion = process.version;
  for (const p of PAYLOAD_PLUGINS)
    out.push({
      name: p,
      content: [
        "#!/bin/sh",
        `# ${p}, installed by \`ocelot install-cni\`: Node.js ${nodeVersion} and the plugin's bundle`,
        `# in ${PAYLOAD_DIR}/${id}/ beside this file, run through the C library copied there; the host`,
        "# needs only /bin/sh.",
        `case "$0" in */*) B="\${0%/*}" ;; *) B="$(dirname "$(command -v "$0")")" ;; esac`,
        `D="$B/${PAYLOAD_DIR}/${id}"`,
        ...versionFastPath(loaderExec("$D", loaderName, `"$D/node" "$D/app/bin/${p}"`)),
        // Other commands: the shim hands the call to this node's daemon, or runs the plugin.
        loaderExec("$D", loaderName, `"$D/${SHIM}" "$D" "${loaderName}" "${p}"`),
        "",
      ].join("\n"),
      mode: 0o755,
    });
  return out;
}
