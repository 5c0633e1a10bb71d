// The `ocelot` command line: one commander program; each command group lives in its own
// module under src/cli/ and registers itself here. Owns: argument parsing, exit codes
// (0 ok, 1 error, 2 usage). Not: any business logic.
import { Command, CommanderError } from "commander";

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

/** Command modules, loaded lazily so that `ocelot --help` stays fast. */
const modules: Array<() => Promise<{ register: Register }>> = [() => import("./demo.js"), () => import("./resources.js"), () => import("./bgpd.js"), () => import("./ipam.js")];

export function buildProgram(registrations: Register[]): Command {
  const program = new Command("ocelot")
    .description("Calico-style node networking: IPAM, BGP, FIB programming and policy")
    .version("0.1.0")
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(s) })
    .showHelpAfterError();
  for (const register of registrations) register(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const registrations = await Promise.all(modules.map(async (load) => (await load()).register));
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
