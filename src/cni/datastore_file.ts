// The CNI plugins' datastore setting kept apart from the network configuration, as Calico keeps
// its calico-kubeconfig beside its conflist: `ocelot install-cni` writes the datastore URL and
// the etcd TLS files and credentials into one JSON file (mode 0600: it may hold a password) and
// the conflist names it in `datastore_file`. Owns the file's shape (pure parse and render) and
// reading it. Not: opening the datastore (datastore/open.ts).
import { readFileSync } from "node:fs";
import type { EtcdOptions } from "../datastore/etcd.js";

/** The file's keys (Calico's netconf names for the etcd files). */
export interface DatastoreFile {
  datastore: string;
  etcd_ca_cert_file?: string;
  etcd_cert_file?: string;
  etcd_key_file?: string;
  etcd_username?: string;
  etcd_password?: string;
}

const KEYS = new Set([
  "datastore",
  "etcd_ca_cert_file",
  "etcd_cert_file",
  "etcd_key_file",
  "etcd_username",
  "etcd_password",
]);

/** Parses the file; throws an Error naming the file and the bad key. */
export function parseDatastoreFile(
  text: string,
  path: string,
): { url: string; etcd: Partial<EtcdOptions> } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new Error(`Datastore file ${path} is not JSON: ${(err as Error).message}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new Error(`Datastore file ${path} is not a JSON object`);
  const o = v as Record<string, unknown>;
  for (const [k, val] of Object.entries(o)) {
    if (!KEYS.has(k)) throw new Error(`Datastore file ${path}: key "${k}" is not supported`);
    if (typeof val !== "string" || val === "")
      throw new Error(`Datastore file ${path}: "${k}" must be a non-empty string`);
  }
  if (typeof o.datastore !== "string") throw new Error(`Datastore file ${path} has no "datastore"`);
  const etcd: Partial<EtcdOptions> = {};
  if (o.etcd_ca_cert_file) etcd.caFile = o.etcd_ca_cert_file as string;
  if (o.etcd_cert_file) etcd.certFile = o.etcd_cert_file as string;
  if (o.etcd_key_file) etcd.keyFile = o.etcd_key_file as string;
  if (o.etcd_username) etcd.username = o.etcd_username as string;
  if (o.etcd_password) etcd.password = o.etcd_password as string;
  return { url: o.datastore, etcd };
}

/** The file's text for a setting (keys in a fixed order, so an unchanged setting is unchanged bytes). */
export function renderDatastoreFile(f: DatastoreFile): string {
  const out: Record<string, string> = {};
  for (const k of KEYS) {
    const v = f[k as keyof DatastoreFile];
    if (v) out[k] = v;
  }
  return `${JSON.stringify(out, null, 2)}\n`;
}

/** Reads and parses the file. */
export function readDatastoreFile(path: string): { url: string; etcd: Partial<EtcdOptions> } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new Error(
      `Cannot read the datastore file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  return parseDatastoreFile(text, path);
}
