// The commander program both entry points build (main.ts: every command; bgpd_main.ts: the BGP
// daemon's commands alone) and how it runs: global datastore flags, exit codes (0 ok, 1 error,
// 2 usage). Not: which command modules are loaded (the entry points choose).
import { Command, CommanderError } from "commander";
import { addDatastoreOptions, DATASTORE_OPTION_NAMES } from "../datastore/cli_options.js";
import { CliError } from "./errors.js";

export type Register = (program: Command) => void;

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

/** Builds the program of these registrations and runs argv; sets process.exitCode. */
export async function runProgram(registrations: Register[], argv: string[]): Promise<void> {
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
