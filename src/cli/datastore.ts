// `ocelot datastore lock|unlock|status`: the datastore lock and the cluster's identity
// (calicoctl datastore migrate lock|unlock, without the "migrate": the lock also guards
// `ipam check` + `release --from-report`). While locked the CNI plugin gives out no address
// (ADD fails with code 11, try again later); DEL still releases. Owns the commands' output.
// Not: the record itself (src/ipam/cluster.ts).
import { type Command, Option } from "commander";
import {
  addDatastoreOptions,
  type DatastoreCliOptions,
  openDatastoreFromCli,
} from "../datastore/open.js";
import { type Datastore, UnavailableError } from "../datastore/types.js";
import { IpamDataError } from "../ipam/block.js";
import { readClusterInformation, setDatastoreLocked } from "../ipam/cluster.js";
import { CliError } from "./main.js";

type Opts = DatastoreCliOptions & { json?: boolean };

const print = (s: string) => process.stdout.write(`${s}\n`);

async function withStore<T>(opts: Opts, fn: (store: Datastore) => Promise<T>): Promise<T> {
  let store: Datastore;
  try {
    store = await openDatastoreFromCli(opts);
  } catch (err) {
    throw new CliError((err as Error).message, err instanceof RangeError ? 2 : 1);
  }
  try {
    return await fn(store);
  } catch (err) {
    if (err instanceof IpamDataError || err instanceof UnavailableError)
      throw new CliError(err.message);
    throw err;
  } finally {
    await store.close();
  }
}

async function lock(opts: Opts, locked: boolean): Promise<void> {
  await withStore(opts, async (store) => {
    const c = await setDatastoreLocked(store, locked);
    if (opts.json)
      return print(JSON.stringify({ clusterGUID: c.clusterGUID, locked: !c.datastoreReady }));
    print(
      locked
        ? "Datastore locked: no new pod addresses (CNI ADD fails with code 11) until `ocelot datastore unlock`"
        : "Datastore unlocked",
    );
  });
}

async function status(opts: Opts): Promise<void> {
  await withStore(opts, async (store) => {
    const c = await readClusterInformation(store);
    const locked = c?.datastoreReady === false;
    if (opts.json)
      return print(JSON.stringify({ clusterGUID: c?.clusterGUID ?? null, locked }, null, 2));
    print(`Cluster GUID: ${c?.clusterGUID ?? "(none yet)"}`);
    print(`Datastore:    ${locked ? "locked" : "not locked"}`);
  });
}

export function register(program: Command): void {
  const ds = program
    .command("datastore")
    .description("lock the datastore against new address assignments; the cluster's identity");
  const json = () => new Option("--json", "print JSON");
  addDatastoreOptions(
    ds
      .command("lock")
      .description("stop new address assignments (for ipam check + release --from-report)")
      .addOption(json()),
  ).action((o) => lock(o, true));
  addDatastoreOptions(
    ds.command("unlock").description("allow address assignments again").addOption(json()),
  ).action((o) => lock(o, false));
  addDatastoreOptions(
    ds
      .command("status")
      .description("the cluster GUID and whether the datastore is locked")
      .addOption(json()),
  ).action((o) => status(o));
}
