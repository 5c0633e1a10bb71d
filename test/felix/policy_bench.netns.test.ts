// The policy benchmark (bench/policy_apply.ts) run tiny, so CI keeps it honest: 20 pods, 5
// policies, 2 network sets of 10 CIDRs, one full pass and its raw reference, 3 pods added and
// 3 labels changed through the agent's apply; the rules in force (iptables-save, ipset save)
// must match the benchmark's own model, and its check must notice a broken set, a missing
// dispatch rule and a missing route. Figures are not asserted (speed belongs to the benchmark).
import { describe, expect, it } from "vitest";
import { runPolicyBench } from "../../bench/policy_apply.js";
import { addonUnavailableReason } from "../../src/lib/native.js";
import { runSync } from "../helpers/limits.js";
import { netnsUnavailableReason, RUN_PREFIX, skipWithReason } from "../helpers/netns.js";

const reason = netnsUnavailableReason() ?? addonUnavailableReason();
const skip = skipWithReason("policy benchmark (netns)", reason);

describe.skipIf(skip)("policy benchmark, tiny", () => {
  it("applies, adds pods, relabels, and the rules in force are the model's", async () => {
    const broken: string[][] = [];
    let route: string | undefined;
    const r = await runPolicyBench({
      endpoints: 20,
      policies: 5,
      sets: 2,
      cidrs: 10,
      runs: 1,
      adds: 3,
      changes: 3,
      prefix: `${RUN_PREFIX}-pb`,
      afterCheck: (ns, recheck) => {
        // One member out of a network set's ipset, then one pod's ingress dispatch rule gone.
        const save = runSync("ip", ["netns", "exec", ns, "ipset", "save"]).stdout;
        const add = save.split("\n").find((l) => / 11\.0\.0\.0\/26$/.test(l));
        expect(add).toBeDefined();
        const [, set, member] = (add as string).split(" ");
        expect(runSync("ip", ["netns", "exec", ns, "ipset", "del", set, member]).status).toBe(0);
        broken.push(recheck());
        const filter = runSync("ip", ["netns", "exec", ns, "iptables-nft-save", "-t", "filter"]);
        const hook = filter.stdout
          .split("\n")
          .find((l) => l.startsWith("-A ocl-to-wl-dispatch -o"));
        expect(hook).toBeDefined();
        const del = ["-t", "filter", "-D", ...(hook as string).slice(3).split(" ")];
        expect(runSync("ip", ["netns", "exec", ns, "iptables-nft", ...del]).status).toBe(0);
        broken.push(recheck());
        // A pod's route gone (checked before the FIB's watch can put it back).
        route = runSync("ip", ["-n", ns, "route", "show", "proto", "202"]).stdout.split(" ")[0];
        expect(route).toMatch(/^10\.244\./);
        expect(runSync("ip", ["-n", ns, "route", "del", route as string]).status).toBe(0);
        broken.push(recheck());
      },
    });
    expect(r.problems).toEqual([]);
    expect(r.ours.length).toBe(1);
    expect(r.raw.length).toBe(1);
    expect(r.add.length).toBe(3);
    expect(r.change.length).toBe(3);
    // Two role sets of 10 pods, two network sets of 10 CIDRs, the pool sets.
    expect(r.ipsetMembers).toBeGreaterThanOrEqual(40);
    expect(r.iptablesRules).toBeGreaterThan(0);
    expect(broken[0]?.some((p) => p.includes("netset"))).toBe(true);
    expect(broken[1]?.some((p) => p.includes("no dispatch"))).toBe(true);
    expect(broken[2]?.some((p) => p.includes(`no route ${route}`))).toBe(true);
    // Nothing of the run is left.
    const left = runSync("ip", ["netns", "list"]).stdout;
    expect(left).not.toContain(`${RUN_PREFIX}-pb`);
  });
});
