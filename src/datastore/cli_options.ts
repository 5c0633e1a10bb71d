// The CLI's datastore flags (--datastore, --etcd-*), defined once: every command group adds
// them to its commands, and the program adds them too so that global flags may come first
// (`ocelot --datastore URL apply ...`). Light on purpose (commander only): the CLI's entry
// imports it before it knows which command runs. Not: opening a datastore (open.ts).
import { type Command, Option } from "commander";

export const DEFAULT_DATASTORE_URL = "file:/var/lib/ocelot/store.db";

/** The option values addDatastoreOptions() adds, as commander parses them. */
export interface DatastoreCliOptions {
  datastore?: string;
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
  etcdUsername?: string;
  etcdPasswordFile?: string;
}

/** Adds --datastore and the etcd TLS/auth flags to a command (shared by every CLI group). */
export function addDatastoreOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        "--datastore <url>",
        `etcd://host:port[,host:port], etcds://..., or file:/path/to/store.db (default: $OCELOT_DATASTORE or ${DEFAULT_DATASTORE_URL})`,
      ),
    )
    .addOption(
      new Option("--etcd-ca <file>", "CA certificate (PEM) for etcd TLS ($OCELOT_ETCD_CA)"),
    )
    .addOption(
      new Option("--etcd-cert <file>", "client certificate (PEM) for etcd ($OCELOT_ETCD_CERT)"),
    )
    .addOption(new Option("--etcd-key <file>", "client key (PEM) for etcd ($OCELOT_ETCD_KEY)"))
    .addOption(new Option("--etcd-username <name>", "etcd user ($OCELOT_ETCD_USERNAME)"))
    .addOption(
      new Option(
        "--etcd-password-file <file>",
        "file holding the etcd password ($OCELOT_ETCD_PASSWORD holds it directly)",
      ),
    );
}

/** The attribute names (commander's camelCase) of the options addDatastoreOptions() adds. */
export const DATASTORE_OPTION_NAMES = [
  "datastore",
  "etcdCa",
  "etcdCert",
  "etcdKey",
  "etcdUsername",
  "etcdPasswordFile",
] as const satisfies ReadonlyArray<keyof DatastoreCliOptions>;
