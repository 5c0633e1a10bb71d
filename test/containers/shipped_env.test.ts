// The environments Ocelot ships set MALLOC_ARENA_MAX=1 (one glibc malloc arena for all of a
// process's threads; glibc reads it only as a process starts, so the daemon cannot set it for
// itself): the image's ENV (the Dockerfile's runtime stage) and the compose file's node
// environment. Read from the files (the DaemonSet: test/k8s/manifests.test.ts; the image built
// for real: image.test.ts, with podman).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

const root = new URL("../../", import.meta.url).pathname;

describe("shipped environments", () => {
  it("the Dockerfile's runtime stage sets MALLOC_ARENA_MAX=1 in its ENV", () => {
    const text = readFileSync(join(root, "Dockerfile"), "utf8");
    // The last stage (FROM scratch): its ENV instructions, continuation lines joined.
    const stage = text.slice(text.lastIndexOf("\nFROM "));
    const env = stage
      .replace(/\\\n\s*/g, " ")
      .split("\n")
      .filter((l) => l.startsWith("ENV "))
      .join(" ");
    expect(env).toMatch(/(^|\s)MALLOC_ARENA_MAX=1(\s|$)/);
  });

  it('every compose node\'s environment has MALLOC_ARENA_MAX: "1"', () => {
    const doc = parse(readFileSync(join(root, "docker-compose.yml"), "utf8"), { merge: true }) as {
      services: Record<string, { command?: string[]; environment?: Record<string, string> }>;
    };
    const nodes = Object.entries(doc.services).filter(
      ([, s]) => s.command?.join(" ") === "ocelot node run",
    );
    expect(nodes.map(([n]) => n)).toEqual(["node1", "node2", "node3"]);
    for (const [name, s] of nodes) expect(s.environment?.MALLOC_ARENA_MAX, name).toBe("1");
  });
});
