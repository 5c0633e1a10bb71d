// The build-time half of src/datastore/etcd_rpc.ts, for scripts/build.mjs and its test: etcd3's
// rpc.proto (with kv.proto and auth.proto) parsed once, as @grpc/proto-loader parses it for
// etcd3 (keepCase), into protobufjs JSON; and the codec of each message type (encode, decode,
// verify, fromObject, toObject) as protobufjs generates it at run time on first use (Type.setup,
// a `new Function` per type and method), here written out as source text once, so that the
// bundle compiles it with the rest and V8's code cache holds it. Uses the same protobufjs the
// bundles carry (node_modules/protobufjs), so the generated code matches its runtime.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

/** The parsed and resolved root of etcd3's rpc.proto (protobufjs with its parser). */
function etcd3RpcRoot() {
  const protobuf = require("protobufjs");
  const root = new protobuf.Root();
  root.loadSync(require.resolve("etcd3/proto/rpc.proto"), { keepCase: true });
  root.resolveAll();
  return root;
}

/** The protobufjs JSON of etcd3's rpc.proto and what it imports. */
export function etcd3RpcJson() {
  return etcd3RpcRoot().toJSON();
}

/**
 * A CommonJS module: `module.exports = { ".etcdserverpb.RangeRequest": (Writer, Reader, types,
 * util) => ({ encode, decode, verify, fromObject, toObject }), … }`, one entry per message type
 * (none for the types protobufjs wraps, google.protobuf.Any and the like: none in etcd's).
 * `types` is the type's fields' resolved types in field order, as Type.setup passes them.
 */
export function etcd3RpcCodecSource() {
  const protobuf = require("protobufjs");
  const encoder = require("protobufjs/src/encoder");
  const decoder = require("protobufjs/src/decoder");
  const verifier = require("protobufjs/src/verifier");
  const converter = require("protobufjs/src/converter");
  const entries = [];
  const walk = (ns) => {
    for (const o of ns.nestedArray ?? []) {
      if (o instanceof protobuf.Type && !protobuf.wrappers[o.fullName]) {
        const fns = [
          `encode: ${encoder(o).toString()}`,
          `decode: ${decoder(o).toString()}`,
          `verify: ${verifier(o).toString()}`,
          `fromObject: ${converter.fromObject(o).toString()}`,
          `toObject: ${converter.toObject(o).toString()}`,
        ];
        entries.push(
          `${JSON.stringify(o.fullName)}: function (Writer, Reader, types, util) {\nreturn {\n${fns.join(",\n")}\n};\n}`,
        );
      }
      walk(o);
    }
  };
  walk(etcd3RpcRoot());
  return `"use strict";\nmodule.exports = {\n${entries.join(",\n")}\n};\n`;
}
