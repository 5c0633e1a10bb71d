import { spawn } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { link, Netns, netnsUnavailableReason, skipWithReason } from "../helpers/netns.js";

const skip = skipWithReason("netns helper", netnsUnavailableReason());

describe.skipIf(skip)("Netns", () => {
  const made: Netns[] = [];
  afterAll(() => {
    for (const ns of made) ns.destroy();
  });

  it("creates two hosts, links them and reads the kernel back", () => {
    const a = Netns.create("a");
    const b = Netns.create("b");
    made.push(a, b);
    link(a, "va", "192.0.2.1/30", b, "vb", "192.0.2.2/30");
    const addrs = a.ipJson<{ ifname: string; addr_info: { local: string }[] }[]>(
      "addr",
      "show",
      "dev",
      "va",
    );
    expect(addrs[0].addr_info.map((x) => x.local)).toContain("192.0.2.1");
    expect(a.exec("ping", "-c1", "-W1", "192.0.2.2")).toContain("1 received");
  });

  it("destroy removes the namespace and what runs inside", () => {
    const c = Netns.create("c");
    const [cmd, args] = c.wrap("sleep", "30");
    spawn(cmd, args, { stdio: "ignore" });
    c.destroy();
    expect(c.pids()).toEqual([]);
  });
});
