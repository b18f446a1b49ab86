# syntax=docker/dockerfile:1

# Build: compile TypeScript and better-sqlite3's native addon, then drop dev dependencies so
# the runtime image gets a ready node_modules and needs no compiler.
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --include=dev --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

# Runtime: same Debian and Node as the build stage, so the native addon matches.
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    GATEWAY_CONFIG=/app/config/default.json \
    GATEWAY_SCHEMA_DIR=/schemas \
    DATABASE_URL=sqlite:/var/lib/plo-gateway/gateway.db \
    GATEWAY_HTTP_PORT=8080 \
    GATEWAY_HTTP_HOST=0.0.0.0
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
# Config and example address data only; signing keys are never baked into the image.
COPY config ./config
RUN mkdir -p /var/lib/plo-gateway && chown node:node /var/lib/plo-gateway
# Deployment data comes in as volumes: the official XSDs (GATEWAY_SCHEMA_DIR), address data
# (GATEWAY_ADDRESS_REGISTER, GATEWAY_POSTCODE_INDEX, GATEWAY_ADDRESS_INDEX), signing key and
# certificate (GATEWAY_SIGNING_KEY, GATEWAY_SIGNING_CERT), and the SQLite store when used.
VOLUME ["/var/lib/plo-gateway"]
USER node
EXPOSE 8080
# node instead of curl: the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.GATEWAY_HTTP_PORT || 8080}/healthz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/cli.js", "start"]
