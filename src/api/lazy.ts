// Schemas built on first use. The kind modules declare each top-level schema as
// `lazy(() => z.object(...))`: the value is a stand-in that builds the real schema the first time
// any property of it is read (safeParse, optional(), _zod, ...) and forwards to it from then on,
// so a process builds only the kinds it uses (`ocelot-cni`: WorkloadEndpoint) instead of every
// kind's schemas at load (110-130 ms CPU per process on a loaded machine; README, "Pod start
// cost"). The stand-in is one object for the life of the process, so what is keyed on it (the
// registry's KindInfo.schema, a FIELD_STATUS mark) stays valid; `built()` gives the real value
// behind one (the inventory looks both up). Not: the schemas themselves (one module per kind).

const BUILT = Symbol("lazy.built");

/** A stand-in for `build()`'s value (an object: a schema, or an object of schemas), built once. */
export function lazy<T extends object>(build: () => T): T {
  let value: T | undefined;
  const real = (): T => {
    if (value === undefined) value = build();
    return value;
  };
  // Every trap forwards to the built value. The proxy's own target stays an empty, extensible
  // object, so property descriptors are reported configurable (a Proxy may not report a
  // non-configurable property its target lacks).
  return new Proxy({} as T, {
    get: (_, key) => (key === BUILT ? real() : Reflect.get(real(), key)),
    set: (_, key, v) => Reflect.set(real(), key, v),
    has: (_, key) => Reflect.has(real(), key),
    deleteProperty: (_, key) => Reflect.deleteProperty(real(), key),
    defineProperty: (_, key, d) => Reflect.defineProperty(real(), key, d),
    ownKeys: () => Reflect.ownKeys(real()),
    getOwnPropertyDescriptor: (_, key) => {
      const d = Reflect.getOwnPropertyDescriptor(real(), key);
      return d === undefined ? undefined : { ...d, configurable: true };
    },
    getPrototypeOf: () => Reflect.getPrototypeOf(real()),
  });
}

/** The value behind a `lazy()` stand-in (building it if not yet), else `v` itself. */
export function built<T>(v: T): T {
  if (typeof v !== "object" || v === null) return v;
  return ((v as { [BUILT]?: T })[BUILT] ?? v) as T;
}
