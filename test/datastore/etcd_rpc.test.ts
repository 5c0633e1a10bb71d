// The etcd services made from build-time JSON and codecs (src/datastore/etcd_rpc.ts, made by
// scripts/etcd3_rpc.mjs as scripts/build.mjs makes them) against the ones etcd3 makes itself
// (@grpc/proto-loader's loadSync of rpc.proto, with etcd3's options): the same services, method
// paths and stream flags, and byte-identical encoding and equal decoding of the messages the
// datastore sends and reads, with the written-out codecs and with protobufjs's own.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
// @ts-expect-error: a plain ES module of the build scripts, without types
import { etcd3RpcCodecSource, etcd3RpcJson } from "../../scripts/etcd3_rpc.mjs";
import {
  ETCD3_CONVERSION,
  type EtcdCodecs,
  etcdPackageDefinition,
} from "../../src/datastore/etcd_rpc.js";

const require = createRequire(import.meta.url);
const { loadSync } = require("@grpc/proto-loader");
const PROTO = require.resolve("etcd3/proto/rpc.proto");

/** What scripts/build.mjs embeds in the bundles (through JSON text, as there). */
const buildJson = () => JSON.parse(JSON.stringify(etcd3RpcJson()));
const dir = mkdtempSync(join(tmpdir(), "ocelot-etcd-rpc-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
/** The codec module the build bundles, loaded as a module; `used` names the types set up. */
const used = new Set<string>();
function buildCodecs(): EtcdCodecs {
  const file = join(dir, "codecs.cjs");
  writeFileSync(file, etcd3RpcCodecSource());
  const loaded = require(file) as EtcdCodecs;
  return Object.fromEntries(
    Object.entries(loaded).map(([name, make]) => [
      name,
      (...args: Parameters<typeof make>) => {
        used.add(name);
        return make(...args);
      },
    ]),
  );
}

// etcd3's own call (lib/connection-pool.js).
const reference = loadSync(PROTO, {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const codecs = buildCodecs();
const ours = etcdPackageDefinition(buildJson(), codecs);
const generated = etcdPackageDefinition(buildJson());

type Method = {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  originalName: string;
  requestSerialize(v: object): Buffer;
  requestDeserialize(b: Buffer): object;
  responseSerialize(v: object): Buffer;
  responseDeserialize(b: Buffer): object;
};
const refService = (name: string) => reference[name] as Record<string, Method>;

describe("etcd services from build-time JSON", () => {
  it("has every service and method of rpc.proto with the same paths and stream flags", () => {
    const services = Object.keys(reference).filter((k) => !("format" in reference[k]));
    expect(Object.keys(ours).sort()).toEqual(services.sort());
    expect(services).toContain("etcdserverpb.KV");
    for (const s of services) {
      const ref = refService(s);
      expect(Object.keys(ours[s] ?? {}).sort()).toEqual(Object.keys(ref).sort());
      for (const [m, def] of Object.entries(ref)) {
        const o = ours[s]?.[m];
        expect(o?.path).toBe(def.path);
        expect(o?.requestStream).toBe(def.requestStream);
        expect(o?.responseStream).toBe(def.responseStream);
        // proto-loader's lodash camelCase makes "hashKv" of HashKV; etcd3 calls "hashKV".
        if (m !== "HashKV") expect(o?.originalName).toBe(def.originalName);
      }
    }
    expect(ours["etcdserverpb.Maintenance"]?.HashKV?.originalName).toBe("hashKV");
  });

  it("encodes and decodes the datastore's messages as etcd3's own definition does", () => {
    const kv = {
      key: Buffer.from("/ocelot/a"),
      value: Buffer.from('{"x":1}'),
      create_revision: "7",
      mod_revision: "9007199254740993",
      version: "2",
      lease: "0",
    };
    const cases: Array<[string, string, object, object]> = [
      [
        "etcdserverpb.KV",
        "Range",
        { key: Buffer.from("/ocelot/"), range_end: Buffer.from("/ocelot0"), count_only: true },
        { header: { revision: "12" }, kvs: [kv], more: false, count: "1" },
      ],
      [
        "etcdserverpb.KV",
        "Txn",
        {
          compare: [
            { key: kv.key, target: "MOD", result: "EQUAL", mod_revision: "9" },
            { key: kv.key, target: "VERSION", result: "EQUAL", version: "0" },
          ],
          success: [{ request_put: { key: kv.key, value: kv.value } }],
          failure: [{ request_range: { key: kv.key } }],
        },
        {
          header: { revision: "13" },
          succeeded: false,
          responses: [{ response_range: { kvs: [kv], count: "1" } }],
        },
      ],
      [
        "etcdserverpb.Watch",
        "Watch",
        {
          create_request: {
            key: Buffer.from("/ocelot/"),
            range_end: Buffer.from("/ocelot0"),
            start_revision: "5",
            progress_notify: true,
            prev_kv: false,
          },
        },
        {
          header: { revision: "14" },
          watch_id: "3",
          created: false,
          events: [
            { type: "PUT", kv },
            { type: "DELETE", kv: { ...kv, value: Buffer.alloc(0) } },
          ],
          compact_revision: "0",
        },
      ],
    ];
    expect(Object.keys(codecs)).toContain(".etcdserverpb.RangeResponse");
    for (const [service, method, request, response] of cases)
      for (const def of [ours, generated]) {
        const ref = refService(service)[method] as Method;
        const o = def[service]?.[method] as Method;
        const reqBytes = ref.requestSerialize(request);
        expect(o.requestSerialize(request).equals(reqBytes)).toBe(true);
        expect(o.requestDeserialize(reqBytes)).toEqual(ref.requestDeserialize(reqBytes));
        const resBytes = ref.responseSerialize(response);
        expect(resBytes.length).toBeGreaterThan(10);
        expect(o.responseSerialize(response).equals(resBytes)).toBe(true);
        const decoded = o.responseDeserialize(resBytes);
        expect(decoded).toEqual(ref.responseDeserialize(resBytes));
        expect(JSON.stringify(decoded)).toContain("9007199254740993");
      }
    // The written-out codecs were the ones in use (not ones generated on first call).
    for (const t of [".etcdserverpb.RangeRequest", ".etcdserverpb.TxnResponse", ".mvccpb.KeyValue"])
      expect(used.has(t), t).toBe(true);
  });

  it("converts as etcd3 asks: int64 as decimal strings, enums by name, defaults filled in", () => {
    expect(ETCD3_CONVERSION).toEqual({
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    const range = ours["etcdserverpb.KV"]?.Range as Method;
    const empty = range.responseDeserialize(Buffer.alloc(0)) as Record<string, unknown>;
    expect(empty).toMatchObject({ kvs: [], more: false, count: "0" });
  });
});
