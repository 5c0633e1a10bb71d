// Calico v3 resources as plain values for the node daemon's pure state tests.
import type { BGPConfiguration, BGPFilter, BGPPeer } from "../../src/api/bgp.js";
import type { IPPool } from "../../src/api/ippool.js";
import type { Affinity } from "../../src/ipam/records.js";

export const V3 = "projectcalico.org/v3" as const;

export const pool = (name: string, cidr: string, spec: Partial<IPPool["spec"]> = {}) =>
  ({ apiVersion: V3, kind: "IPPool", metadata: { name }, spec: { cidr, ...spec } }) as IPPool;

export const aff = (n: string, cidr: string, state: Affinity["state"] = "confirmed"): Affinity => ({
  node: n,
  cidr,
  state,
});

export const peer = (name: string, spec: BGPPeer["spec"]) =>
  ({ apiVersion: V3, kind: "BGPPeer", metadata: { name }, spec }) as BGPPeer;

export const bgpConfig = (name: string, spec: BGPConfiguration["spec"]) =>
  ({ apiVersion: V3, kind: "BGPConfiguration", metadata: { name }, spec }) as BGPConfiguration;

export const filter = (name: string, spec: BGPFilter["spec"]) =>
  ({ apiVersion: V3, kind: "BGPFilter", metadata: { name }, spec }) as BGPFilter;
