// The command line's user-facing error: below every command module and both entry points
// (main.ts, bgpd_main.ts), so that a command does not import an entry point to throw it.

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
