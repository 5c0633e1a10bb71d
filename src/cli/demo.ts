// `ocelot demo` and `ocelot demo down`: the multi-node cluster of src/node/demo.ts, with a
// connectivity check between all pods. Owns: option parsing and the printed report.
import type { Command } from "commander";
import { netnsUnavailableReason } from "../lib/netns.js";
import { StepProgress } from "../lib/step_progress.js";
import {
  BGP_PHASES,
  checkConnectivity,
  checkIpamClean,
  checkSourceAddresses,
  demoDown,
  demoUp,
  firstPing,
  loadState,
  SETUP_PHASES,
} from "../node/demo.js";
import { type Phase, PhaseClock } from "../node/demo_wait.js";
import { CliError } from "./main.js";

const DEFAULT_STATE_DIR = "/run/ocelot-demo";

/** What the progress line names, in order: the set-up's phases, then the checks. */
const STEPS = [
  ...SETUP_PHASES,
  "first ping",
  "pings between all pods",
  "source address checks",
  "ocelot ipam check",
];

function positiveInt(name: string, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > max) {
      throw new CliError(`--${name}: "${v}" is not a whole number from 1 to ${max}`, 2);
    }
    return n;
  };
}

export function register(program: Command): void {
  const demo = program
    .command("demo")
    .description("run a cluster of N nodes, a top-of-rack router and pods in network namespaces")
    .option("--nodes <n>", "number of nodes", positiveInt("nodes", 20), 3)
    .option("--pods <n>", "pods per node", positiveInt("pods", 20), 2)
    .option("--keep", "leave the cluster running (remove it with `ocelot demo down`)", false)
    .option("--json", "print the result as JSON", false)
    .option(
      "--progress",
      "progress lines on stderr even when it is not a terminal (never with --json)",
      false,
    )
    .option("--prefix <name>", "namespace name prefix", "ocdemo")
    .option(
      "--state-dir <dir>",
      "where the demo keeps its datastore, configs and logs",
      DEFAULT_STATE_DIR,
    )
    .action(async (opts) => {
      const why = netnsUnavailableReason();
      if (why) throw new CliError(`The demo needs network namespaces: ${why}`);
      const progress = new StepProgress("demo", STEPS.length, {
        flag: opts.progress,
        json: opts.json,
      });
      const log = opts.json ? () => {} : (line: string) => progress.around(() => console.log(line));
      const next = (name: string) => {
        const at = STEPS.indexOf(name);
        const step = STEPS[at + 1];
        if (at >= 0 && step) progress.step(step);
      };
      const clock = new PhaseClock((p: Phase) => {
        log(`demo: ${p.name} in ${p.seconds.toFixed(2)} s (at ${p.atSeconds.toFixed(2)} s)`);
        next(p.name);
      });
      progress.step(STEPS[0] as string);
      const state = await demoUp({
        nodes: opts.nodes,
        podsPerNode: opts.pods,
        prefix: opts.prefix,
        stateDir: opts.stateDir,
        log,
        clock,
      }).catch((err: Error) => {
        progress.finish();
        throw new CliError(err.message);
      });
      try {
        const first = await firstPing(state).catch((err: Error) => {
          throw new CliError(err.message);
        });
        clock.end("first ping");
        const converged = clock.phases.at(-1)?.atSeconds ?? 0;
        const bgpSeconds = clock.sum(BGP_PHASES);
        // One retry budget for all checks: once one stayed unanswered for its whole limit, the
        // rest get one try each (a broken network fails in one limit, not one per check).
        const budget = { open: true };
        const pings = checkConnectivity(
          state,
          (done, total) => progress.count(done, total),
          budget,
        );
        next("pings between all pods");
        const sources = await checkSourceAddresses(state, budget);
        next("source address checks");
        const ipam = checkIpamClean(state);
        progress.finish();
        const failed = [...pings, ...sources].filter((p) => !p.ok);
        if (opts.json) {
          console.log(
            JSON.stringify(
              {
                convergedSeconds: converged,
                bgpSeconds,
                phases: clock.phases,
                firstPing: first,
                nodes: state.nodes,
                pods: state.pods,
                pings,
                sources,
                ipam,
              },
              null,
              2,
            ),
          );
        } else {
          log(
            `demo: converged in ${converged.toFixed(2)} s; BGP (${BGP_PHASES.join(" + ")}) ${bgpSeconds.toFixed(2)} s`,
          );
          for (const p of pings) log(`  ${p.ok ? "ok  " : "FAIL"} ${p.from} -> ${p.to}`);
          log(`demo: ${pings.filter((p) => p.ok).length} of ${pings.length} pings answered`);
          for (const c of sources) {
            const what = c.nat ? "masqueraded to its node" : "its own address";
            log(
              `  ${c.ok ? "ok  " : "FAIL"} ${c.to} saw ${c.seen ?? "(no answer)"} from ${c.from}: ${what}`,
            );
          }
          const direct = sources.filter((c) => !c.nat);
          const masq = sources.filter((c) => c.nat);
          log(
            `demo: ${direct.filter((c) => c.ok).length} of ${direct.length} receivers in the cluster saw the sender's own address (no NAT)`,
          );
          log(
            `demo: ${masq.filter((c) => c.ok).length} of ${masq.length} pod connections to the internet host were masqueraded to their node's address (NAT-outgoing)`,
          );
          log(
            `demo: ocelot ipam check: ${ipam.leaked} leaked addresses, ${ipam.blocksOfMissingNodes} blocks of missing nodes; ocelot ipam gc --dry-run: ${ipam.gcPlanned.length} planned`,
          );
          if (opts.keep) {
            log(`demo: left running. Look around with e.g.:`);
            const n1 = state.nodes[0];
            log(`  ip -n ${n1.ns} route`);
            log(`  ip netns exec ${n1.ns} ocelot node status # finds ${n1.statusSocket}`);
            log(`  ocelot get caliconodestatus -o wide --datastore ${state.datastore}`);
            log(`  ip netns exec ${n1.ns} curl -s http://${n1.metricsAddress}/metrics`);
            log(`  ocelot ipam check --datastore ${state.datastore}`);
            log(
              `  ip netns exec ${state.tor.ns} vtysh -N ${state.tor.ns} -c 'show bgp ipv4 unicast'`,
            );
            log("  ocelot demo down");
          }
        }
        if (failed.length > 0) throw new CliError(`${failed.length} connectivity checks failed`);
        if (!ipam.ok)
          throw new CliError(
            `IPAM is not clean on the demo's datastore: ${ipam.problems.join("; ")}`,
          );
      } finally {
        progress.finish();
        if (!opts.keep) demoDown(state, log);
      }
    });

  demo
    .command("down")
    .description("remove a demo left running with --keep")
    .option("--state-dir <dir>", "the demo's state directory (default: demo's --state-dir)")
    .action((opts: { stateDir?: string }, cmd: Command) => {
      // Given before `down` (`demo --state-dir X down`) or after it (`demo down --state-dir X`).
      const stateDir = opts.stateDir ?? (cmd.optsWithGlobals().stateDir as string);
      const state = loadState(stateDir);
      if (!state) throw new CliError(`No demo is running (no state in ${stateDir})`);
      demoDown(state, (line) => console.log(line));
    });
}
