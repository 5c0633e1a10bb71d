// The BGP daemon's own entry point: `ocelot bgpd`, `ocelot status` and `ocelot routes` with only
// bgpd's modules (bin/ocelot picks it when one of them is the first argument). Its bundle,
// dist/bundle/ocelot-bgpd.cjs, is about a fifth of the whole CLI's: a long-running daemon keeps
// its bundle's source text and the bytecode of its code cache for as long as it runs, so it
// should not carry etcd's client, the API schemas or Felix (docs/scale.md, fixed cost).
import { register } from "./bgpd.js";
import { runProgram } from "./program.js";

export async function main(argv: string[]): Promise<void> {
  await runProgram([register], argv);
}
