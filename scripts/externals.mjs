// What the bundles (scripts/build.mjs) leave outside, loaded at run time: shared by the build
// and by scripts/runtime_modules.mjs, which copies only these (and what they require) into an
// image. Native addons (better-sqlite3: its addon; its JavaScript is bundled, BUNDLED_JS_OF)
// and pino (its transports run in worker threads by module name) stay in node_modules. etcd3 is
// all in the bundles: its rpc.proto is compiled into them (scripts/build.mjs).
// `@kubernetes/client-node` (loaded only when ocelot-cni is given a kubeconfig) is bundled on
// its own, dist/bundle/kubernetes-client-node.cjs, required by the other bundles when needed.
export const EXTERNAL_MODULES = ["better-sqlite3", "pino", "pino-pretty"];
/**
 * Of those, the ones whose JavaScript is bundled all the same (its many small files cost a
 * resolve, a read and a compile each at every start): only the native addon is loaded from
 * node_modules (src/datastore/sqlite.ts passes its path), and `bindings`, required only when
 * no path is given, stays outside.
 */
export const BUNDLED_JS_OF = ["better-sqlite3"];
/** Packages of which only these files are read at run time (their code is in the bundles). */
export const EXTERNAL_FILES = {};
/** Bundled alone and required by the other bundles from beside them. */
export const SEPARATE_BUNDLES = { "@kubernetes/client-node": "kubernetes-client-node" };
/** Dependencies only their install scripts use (better-sqlite3's prebuilt download). */
export const INSTALL_ONLY = ["prebuild-install"];
