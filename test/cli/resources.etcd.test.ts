// `ocelot` resource commands end to end on a real etcd 3.4 started on loopback for this file;
// the CLI reaches it through --datastore etcd://127.0.0.1:PORT.
import { EtcdDatastore } from "../../src/datastore/etcd.js";
import { etcdUnavailableReason, startEtcd } from "../helpers/etcd.js";
import { skipWithReason } from "../helpers/netns.js";
import { resourcesSuite } from "./resources_suite.js";

const skip = skipWithReason("ocelot resources on etcd", etcdUnavailableReason());

resourcesSuite(
  "a real etcd",
  async () => {
    const server = await startEtcd();
    return {
      url: server.url,
      connect: () => EtcdDatastore.connect({ endpoints: [server.endpoint] }),
      close: () => server.stop(),
    };
  },
  skip ? etcdUnavailableReason() : undefined,
);
