import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isDns1123Subdomain } from "../../src/api/fields.js";
import {
  buildWorkloadEndpointName,
  escapeDashes,
  isPlainPart,
  namePart,
  splitWorkloadEndpointName,
} from "../../src/cni/wep_name.js";

/** Names a runtime may pass: podman's generated and user names, Docker's, odd ones. */
const RUNTIME_NAMES = [
  "pensive_beaver",
  "Pensive_Beaver",
  "WEB",
  "web.1",
  "my.app-2",
  "a..b",
  ".hidden",
  "trailing-",
  "-leading",
  "x_y.z-w",
  "___",
  "ünïcödé",
  "with space",
  "slash/name",
  "a".repeat(200),
];

const plainName = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/);
const anyName = fc.oneof(
  plainName,
  fc.string({ minLength: 1, maxLength: 30 }),
  fc.constantFrom(...RUNTIME_NAMES),
);

describe("namePart()", () => {
  it("keeps a plain part as Calico does: dashes doubled, nothing else changed", () => {
    expect(namePart("core-dns-5d")).toBe("core--dns--5d");
    expect(namePart("web.1")).toBe("web.1");
    expect(namePart("a--b")).toBe("a----b");
    expect(namePart("0123abcdef")).toBe("0123abcdef");
    expect(escapeDashes("a-b--c")).toBe("a--b----c");
  });

  it("escapes a part no resource name can hold: readable slug, '---', 12 hex digits", () => {
    expect(namePart("pensive_beaver")).toMatch(/^pensive\.beaver---[0-9a-f]{12}$/);
    expect(namePart("WEB")).toMatch(/^web---[0-9a-f]{12}$/);
    expect(namePart("___")).toMatch(/^x---[0-9a-f]{12}$/);
    expect(namePart("a..b")).toMatch(/^a\.b---[0-9a-f]{12}$/);
    // Case matters to the runtime, so it matters here.
    expect(namePart("WEB")).not.toBe(namePart("web"));
    expect(namePart("Web")).not.toBe(namePart("WEB"));
    const plain = new Set(["web.1", "my.app-2", "a".repeat(200)]);
    for (const n of RUNTIME_NAMES) expect(isPlainPart(n), n).toBe(plain.has(n));
  });
});

describe("buildWorkloadEndpointName()", () => {
  it("is a valid resource name for any name a runtime may pass", () => {
    for (const pod of RUNTIME_NAMES) {
      const name = buildWorkloadEndpointName("node-1", "k8s", pod, "eth0");
      expect(isDns1123Subdomain(name), `${pod} -> ${name}`).toBe(true);
    }
    fc.assert(
      fc.property(anyName, (pod) =>
        isDns1123Subdomain(buildWorkloadEndpointName("n1", "k8s", pod, "eth0")),
      ),
    );
  });

  it("round-trips plain parts through Calico's dash-separated parsing", () => {
    fc.assert(
      fc.property(plainName, plainName, plainName, (node, pod, ep) => {
        const name = buildWorkloadEndpointName(node, "k8s", pod, ep);
        expect(splitWorkloadEndpointName(name)).toEqual([node, "k8s", pod, ep]);
      }),
    );
    expect(splitWorkloadEndpointName("node--1-k8s-core--dns--5d-eth0")).toEqual([
      "node-1",
      "k8s",
      "core-dns-5d",
      "eth0",
    ]);
  });

  it("an escaped name is never read as plain parts", () => {
    const name = buildWorkloadEndpointName("n1", "k8s", "pensive_beaver", "eth0");
    expect(splitWorkloadEndpointName(name)).toBeUndefined();
  });

  it("never gives two different pods (plain or escaped) one name", () => {
    // Pairs that would collide under a naive escape: where a dash sits, case, '_' vs '.'.
    const tricky: Array<[string, string, string, string]> = [
      ["n", "k8s", "a-k8s-b", "eth0"],
      ["n-k8s-a", "k8s", "b", "eth0"],
      ["n1", "k8s", "pensive_beaver", "eth0"],
      ["n1", "k8s", "pensive.beaver", "eth0"],
      ["n1", "k8s", "Pensive_Beaver", "eth0"],
      ["n1", "k8s", `pensive.beaver-${namePart("pensive_beaver").slice(-12)}`, "eth0"],
    ];
    const names = tricky.map((p) => buildWorkloadEndpointName(...p));
    expect(new Set(names).size).toBe(names.length);
    fc.assert(
      fc.property(anyName, anyName, (a, b) => {
        fc.pre(a !== b);
        expect(buildWorkloadEndpointName("n1", "k8s", a, "eth0")).not.toBe(
          buildWorkloadEndpointName("n1", "k8s", b, "eth0"),
        );
      }),
      { numRuns: 2000 },
    );
  });
});
