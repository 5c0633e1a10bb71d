// The `ocelot` command line: one commander program; each command group lives in its own
// module under src/cli/ and registers itself here. Owns: argument parsing, exit codes
// (0 ok, 1 error, 2 usage). Not: any business logic.
import { Command, CommanderError } from "commander";
import { addDatastoreOptions, DATASTORE_OPTION_NAMES } from "../datastore/cli_options.js";

/** An error whose message is for the user as-is (no stack trace); exit code 1. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = "CliError";
  }
}

type Register = (program: Command) => void;

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

export function buildProgram(registrations: Register[]): Command {
  const program = new Command("ocelot")
    .description("Calico-style node networking: IPAM, BGP, FIB programming and policy")
    .version("0.1.0")
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(s) })
    .showHelpAfterError()
    // Program flags only before the command, so that a command's own --datastore after it is
    // the command's (`ocelot apply --datastore URL` as before).
    .enablePositionalOptions();
  // Global flags first (`ocelot --datastore URL apply ...`): given to the command that runs,
  // unless it was given its own.
  addDatastoreOptions(program);
  program.hook("preAction", (_program, action) => inheritGlobalOptions(program, action));
  for (const register of registrations) register(program);
  return program;
}

/** Copies the program's datastore flags to the running command where it has none of its own. */
function inheritGlobalOptions(program: Command, action: Command): void {
  if (action === program) return;
  for (const name of DATASTORE_OPTION_NAMES) {
    const value = program.getOptionValue(name);
    if (value === undefined) continue;
    const known = action.options.some((o) => o.attributeName() === name);
    if (!known) continue;
    if (action.getOptionValue(name) === undefined)
      action.setOptionValueWithSource(name, value, "cli");
  }
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
  const program = buildProgram(registrations);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; anything else commander rejects is a usage error.
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    if (err instanceof CliError) {
      process.stderr.write(`ocelot: ${err.message}\n`);
      process.exitCode = err.exitCode;
      return;
    }
    throw err;
  }
}
