// config/clab/ocelot.clab.yml against containerlab's own JSON schema (../shared/lab/containerlab,
// draft-07, validated with ajv), every file its binds name, and that it is the compose file's
// lab: the same images, three Ocelot nodes, the ToR with FRR's config files, etcd.
import { existsSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { Ajv } from "ajv";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

const root = new URL("../../", import.meta.url).pathname;
const topoPath = join(root, "config/clab/ocelot.clab.yml");
// The shared folder: beside the checkout in CI (read-only), two levels up from a worktree.
const schemaFile =
  ["../shared", "../../shared"]
    .map((d) => resolve(root, d, "lab/containerlab/clab.schema.json"))
    .find((p) => existsSync(p)) ?? "../shared/lab/containerlab/clab.schema.json (missing)";

// biome-ignore lint/suspicious/noExplicitAny: a parsed topology, checked field by field
type Any = any;
const topo: Any = parse(readFileSync(topoPath, "utf8"));
const compose: Any = parse(readFileSync(join(root, "docker-compose.yml"), "utf8"), { merge: true });

function validator() {
  const ajv = new Ajv({ strict: false, allErrors: true });
  return ajv.compile(JSON.parse(readFileSync(schemaFile, "utf8")));
}

describe("config/clab/ocelot.clab.yml", () => {
  it("is valid against containerlab's schema", () => {
    const validate = validator();
    const ok = validate(topo);
    expect(validate.errors ?? [], JSON.stringify(validate.errors, null, 1)).toEqual([]);
    expect(ok).toBe(true);
  });

  it("the schema check can fail: a node with an unknown field, a bad address", () => {
    const validate = validator();
    const bad = structuredClone(topo);
    bad.topology.nodes.node1.capabilities = ["NET_ADMIN"];
    expect(validate(bad)).toBe(false);
    const bad2 = structuredClone(topo);
    bad2.topology.nodes.node2["mgmt-ipv4"] = "172.31.251.300";
    expect(validate(bad2)).toBe(false);
  });

  it("every file its binds name exists (paths relative to the topology file)", () => {
    const binds = Object.entries(topo.topology.nodes).flatMap(([name, n]: [string, Any]) =>
      (n.binds ?? []).map((b: string) => ({ name, src: b.split(":")[0] as string })),
    );
    expect(binds.length).toBeGreaterThanOrEqual(3);
    for (const { name, src } of binds) {
      const p = isAbsolute(src) ? src : resolve(dirname(topoPath), src);
      expect(existsSync(p), `${name}: bind source ${src} (${p})`).toBe(true);
    }
    const tor = topo.topology.nodes.tor.binds.map((b: string) => b.split(":")[1]);
    expect(tor).toContain("/etc/frr/frr.conf");
    expect(tor).toContain("/etc/frr/daemons");
  });

  it("is the compose file's lab: etcd, three Ocelot nodes and the ToR, same images", () => {
    const nodes = topo.topology.nodes;
    expect(Object.keys(nodes).sort()).toEqual(["etcd", "node1", "node2", "node3", "tor"]);
    for (const name of Object.keys(nodes))
      expect(nodes[name].image, name).toBe(compose.services[name].image);
    const subnet = topo.mgmt["ipv4-subnet"].replace(/\.0\/24$/, ".");
    for (const n of ["node1", "node2", "node3"]) {
      const node = nodes[n];
      expect(node["mgmt-ipv4"].startsWith(subnet)).toBe(true);
      expect(node.cmd).toBe("ocelot node run");
      expect(node.env.IP).toBe(`${node["mgmt-ipv4"]}/24`);
      expect(node.env.NODENAME).toBe(n);
      expect(node.env.ETCD_ENDPOINTS).toBe(`http://${nodes.etcd["mgmt-ipv4"]}:2379`);
      // The compose nodes' settings, but for the node's own name and address.
      const { NODENAME: _n, IP: _i, ...env } = compose.services[n].environment;
      const { NODENAME: _cn, IP: _ci, ...clabEnv } = node.env;
      expect(Object.keys(clabEnv).sort()).toEqual(Object.keys(env).sort());
      expect(node.env.OCELOT_DATASTORE).toBe(`etcd://${nodes.etcd["mgmt-ipv4"]}:2379`);
      expect(node["cap-add"].sort()).toEqual(["NET_ADMIN", "NET_RAW"]);
    }
    // The pool and the ToR's BGPPeer are applied once, with the ToR's address.
    expect(nodes.node1.exec).toEqual([`sh /etc/ocelot/compose/apply.sh ${nodes.tor["mgmt-ipv4"]}`]);
  });
});
