// etcd's gRPC services for the `etcd3` client, from a descriptor made at build time. etcd3 parses
// its rpc.proto with @grpc/proto-loader at every process start and then builds a descriptor of
// every message (toDescriptor, FileDescriptorProto encoding) that only gRPC reflection reads:
// ~45% of a CNI ADD's CPU on etcd. scripts/build.mjs parses the .proto once into protobufjs JSON
// (as proto-loader parses it for etcd3: keepCase) and writes out each message type's codec
// (scripts/etcd3_rpc.mjs), and makes the bundled etcd3 call etcdPackageDefinition() with them
// instead. Owns: the package definition made from them (services only: method paths, stream
// flags, serialisers as proto-loader makes them). Not: the client (etcd3, etcd.ts). Without a
// bundle (dist/) etcd3 loads its .proto as it always did.
import {
  type IConversionOptions,
  type INamespace,
  Namespace,
  Reader,
  type ReflectionObject,
  Root,
  Service,
  Type,
  util,
  Writer,
} from "protobufjs/light.js";

/**
 * The options etcd3 (lib/connection-pool.js) gives proto-loader's loadSync: field names as in
 * the .proto (keepCase is a parse option: the JSON already has them), int64 as decimal strings,
 * enums by name, defaults filled in, the set oneof member named.
 */
export const ETCD3_CONVERSION: IConversionOptions = {
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** One gRPC method as @grpc/grpc-js's loadPackageDefinition reads it (proto-loader's shape). */
export interface EtcdMethodDefinition {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize(value: object): Buffer;
  requestDeserialize(bytes: Buffer): object;
  responseSerialize(value: object): Buffer;
  responseDeserialize(bytes: Buffer): object;
  originalName: string;
}
export type EtcdPackageDefinition = Record<string, Record<string, EtcdMethodDefinition>>;

/** What Type.setup installs on a message type: its generated codec functions. */
type Codec = Pick<Type, "encode" | "decode" | "verify" | "fromObject" | "toObject">;
/**
 * Message types' codecs written out at build time (scripts/etcd3_rpc.mjs), by full name
 * (".etcdserverpb.RangeRequest"); each is given what protobufjs's Type.setup gives the code it
 * generates: Writer, Reader, the fields' resolved types in field order, util.
 */
export type EtcdCodecs = Record<
  string,
  (writer: typeof Writer, reader: typeof Reader, types: unknown[], u: typeof util) => Codec
>;

const serializer = (type: Type) => (value: object) => {
  if (Array.isArray(value))
    throw new Error(`Failed to serialize message: expected object with ${type.name} structure`);
  return Buffer.from(type.encode(type.fromObject(value)).finish());
};
const deserializer = (type: Type, o: IConversionOptions) => (bytes: Buffer) =>
  type.toObject(type.decode(bytes), o);

/** lodash.camelcase of a method name, as proto-loader sets originalName ("LeaseGrant" -> "leaseGrant"). */
function camelCase(name: string): string {
  return name.charAt(0).toLowerCase() + name.slice(1);
}

/** Makes each type with a codec in `codecs` set itself up from it instead of generating one. */
function useCodecs(ns: Namespace, codecs: EtcdCodecs): void {
  for (const o of ns.nestedArray) {
    const make = o instanceof Type ? codecs[o.fullName] : undefined;
    if (o instanceof Type && make)
      o.setup = function setup(this: Type) {
        const types = this.fieldsArray.map((f) => f.resolve().resolvedType);
        return Object.assign(this, make(Writer, Reader, types, util));
      };
    if (o instanceof Namespace) useCodecs(o, codecs);
  }
}

/**
 * The package definition etcd3 hands to grpc.loadPackageDefinition: every service of the JSON
 * under its full name ("etcdserverpb.KV"), each method with proto-loader's serialisers, the
 * message types' codecs from `codecs` where given (else generated on first use, as protobufjs
 * does). Message types are left out of the definition: they are read only by gRPC reflection,
 * which a client does not serve.
 */
export function etcdPackageDefinition(
  json: INamespace,
  codecs: EtcdCodecs = {},
  conversion: IConversionOptions = ETCD3_CONVERSION,
): EtcdPackageDefinition {
  const root = Root.fromJSON(json);
  root.resolveAll();
  useCodecs(root, codecs);
  const def: EtcdPackageDefinition = {};
  const walk = (obj: ReflectionObject, prefix: string) => {
    const name = prefix ? `${prefix}.${obj.name}` : obj.name;
    if (obj instanceof Service) {
      const methods: Record<string, EtcdMethodDefinition> = {};
      for (const m of obj.methodsArray) {
        const req = m.resolvedRequestType as Type;
        const res = m.resolvedResponseType as Type;
        methods[m.name] = {
          path: `/${name}/${m.name}`,
          requestStream: !!m.requestStream,
          responseStream: !!m.responseStream,
          requestSerialize: serializer(req),
          requestDeserialize: deserializer(req, conversion),
          responseSerialize: serializer(res),
          responseDeserialize: deserializer(res, conversion),
          originalName: camelCase(m.name),
        };
      }
      def[name] = methods;
    } else if (obj instanceof Namespace) for (const child of obj.nestedArray) walk(child, name);
  };
  walk(root, "");
  return def;
}
