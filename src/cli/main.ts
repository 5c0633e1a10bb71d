// The `ocelot` command line: one commander program (program.ts); each command group lives in
// its own module under src/cli/ and registers itself here. Owns: which command modules a given
// argv loads. Not: any business logic (bgpd_main.ts is the BGP daemon's smaller entry point).
import { DATASTORE_OPTION_NAMES } from "../datastore/cli_options.js";
import { buildProgram, type Register, runProgram } from "./program.js";

export { CliError } from "./errors.js";
export { buildProgram };

type Loader = () => Promise<{ register: Register }>;

const demo: Loader = () => import("./demo.js");
const resources: Loader = () => import("./resources.js");
const bgpd: Loader = () => import("./bgpd.js");
const ipam: Loader = () => import("./ipam.js");
const datastore: Loader = () => import("./datastore.js");
const node: Loader = () => import("./node.js");
const installCni: Loader = () => import("./install_cni.js");
const kubeControllers: Loader = () => import("./kube_controllers.js");
const policy: Loader = () => import("./policy.js");

/**
 * Command modules by the top-level command they register. Only the invoked command's module is
 * loaded (a daemon should not carry the CLI's other dependencies: etcd, SQLite, schemas); help
 * and unknown commands load them all.
 */
const commands: Record<string, Loader> = {
  demo,
  apply: resources,
  create: resources,
  replace: resources,
  get: resources,
  delete: resources,
  validate: resources,
  bgpd,
  status: bgpd,
  routes: bgpd,
  ipam,
  datastore,
  node,
  "log-level": node,
  "install-cni": installCni,
  "kube-controllers": kubeControllers,
  policy,
};

/** The program-level flags that take a value (their value is not the command's name). */
const GLOBAL_VALUE_FLAGS = new Set(
  DATASTORE_OPTION_NAMES.map((n) => `--${n.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`),
);

/** The command named in argv: the first word that is neither a flag nor a global flag's value. */
export function commandName(argv: string[]): string | undefined {
  const args = argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (!a.startsWith("-")) return a;
    if (GLOBAL_VALUE_FLAGS.has(a)) i++;
  }
  return undefined;
}

/** The loaders needed for argv: the named command's, none for --version alone, or all. */
export function loadersFor(argv: string[]): Loader[] {
  const args = argv.slice(2);
  const name = commandName(argv);
  const one = name !== undefined ? commands[name] : undefined;
  if (one) return [one];
  if (name === undefined && args.length === 1 && (args[0] === "--version" || args[0] === "-V"))
    return [];
  return [...new Set(Object.values(commands))];
}

/**
 * For the bundle's V8 code cache (scripts/build.mjs): every kind's schema built and run once,
 * and the etcd client's calls (loaded only when a command opens etcd, as the plugins do).
 */
export async function warmCodeCache(): Promise<void> {
  (await import("../api/registry.js")).warmSchemas();
  await (await import("../datastore/etcd.js")).warmEtcdClient();
}

export async function main(argv: string[]): Promise<void> {
  const registrations = await Promise.all(
    loadersFor(argv).map(async (load) => (await load()).register),
  );
  await runProgram(registrations, argv);
}
