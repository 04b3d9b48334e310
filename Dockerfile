# The isthmus image: one binary for the federation service, the gateway and the sidecar
# (deploy/multi-cluster/ and `isthmus inject` run it with a subcommand as args).
#   docker build -t ghcr.io/isthmus-mesh/isthmus:0.1.0 .

# Build: compile and bundle (npm run build), then drop the dev dependencies.
FROM node:20-bookworm-slim AS build
# A C compiler for native/malloc-trim.c and native/relay.c (scripts/native.mjs); Node's headers come with the image.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before the sources are copied; the build runs below.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY scripts ./scripts
COPY native ./native
COPY src ./src
RUN npm run build && npm prune --omit=dev --ignore-scripts

# Run: distroless Node.js 20 (no shell, no package manager), as the image's non-root user.
FROM gcr.io/distroless/nodejs20-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production
# Two malloc arenas per process, not up to eight per core: about 3 MB less RSS per sidecar
# (src/core/malloc-arenas.ts).
ENV MALLOC_ARENA_MAX=2
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/bin ./bin
COPY --from=build /src/dist ./dist
# The dashboard serves its page from here.
COPY --from=build /src/src/dashboard/assets ./src/dashboard/assets
USER 65532:65532
# federation 15010/15014, gateway 15443/15021, sidecar 15001/15006/15020 (docs/architecture.md)
EXPOSE 15010 15014 15443 15021 15001 15006 15020
ENTRYPOINT ["/nodejs/bin/node", "/app/bin/isthmus.js"]
CMD ["--help"]
