// The per-run prefix of test names (test/helpers/netns.ts): links a test makes inside a node
// daemon's namespace carry it, so it must never begin with a prefix the daemon owns (its pods'
// host-side interfaces, `ocl`), whatever the pid: a WireGuard device named `ocl…` was taken for an
// unknown pod's interface and everything forwarded to it dropped.
import { describe, expect, it } from "vitest";
import { WORKLOAD_IFACE_PREFIX } from "../../src/lib/pod_wiring.js";
import { RUN_PREFIX, runPrefixOf } from "./netns.js";

describe("RUN_PREFIX", () => {
  it("never begins with the pods' interface prefix, for any pid and random bytes", () => {
    // 27216-28511: the pids whose base 36 begins with `l` (the old prefix `oc<pid><hex>` gave
    // `ocl…`, as 28017 did in the failing run); then every pid up to Linux's largest pid_max.
    const pids = [1, 27216, 28017, 28511, 32767, 4_194_304];
    for (let p = 1; p <= 4_194_304; p += 97) pids.push(p);
    for (const pid of pids)
      for (const random of [
        Buffer.from([0, 0]),
        Buffer.from([0xff, 0xff]),
        Buffer.from([0xab, 0x1c]),
      ]) {
        const prefix = runPrefixOf(pid, random);
        expect(prefix.startsWith(WORKLOAD_IFACE_PREFIX), `${pid}: ${prefix}`).toBe(false);
        expect(prefix).toMatch(/^oc[0-9a-f]{4}[0-9a-z]+$/);
      }
    expect(RUN_PREFIX.startsWith(WORKLOAD_IFACE_PREFIX)).toBe(false);
  });

  it("keeps names short: with a 5-character pid (pid_max 4194304) it is 11 characters, as before", () => {
    expect(runPrefixOf(4_194_304, Buffer.from([1, 2]))).toHaveLength(11);
    expect(runPrefixOf(28017, Buffer.from([1, 2]))).toBe("oc0102lm9");
  });
});
