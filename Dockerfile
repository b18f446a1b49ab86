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
    GATEWAY_CONFIG=/app/config/production.example.json \
    GATEWAY_SCHEMA_DIR=/schemas \
    DATABASE_URL=sqlite:/var/lib/plo-gateway/gateway.db \
    GATEWAY_HTTP_PORT=8080 \
    GATEWAY_HTTP_HOST=0.0.0.0
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
# The production example only: the demo config and its keys (public in the repository) stay out,
# and `start` refuses them under NODE_ENV=production anyway.
COPY config/production.example.json ./config/
RUN mkdir -p /var/lib/plo-gateway && chown node:node /var/lib/plo-gateway
# Deployment data comes in as volumes (see compose.yaml): the official XSDs (/schemas), address
# data (/data: the register snapshot, postcode and address indexes), keys and certificates
# (/run/secrets: signing, decryption, trust anchors), and the SQLite store when used.
VOLUME ["/var/lib/plo-gateway"]
USER node
EXPOSE 8080
# node instead of curl: the slim image has no curl. With http.tls the listener speaks HTTPS only;
# the probe asks 127.0.0.1, which the certificate does not name, so it does not check the name.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "const tls = !!process.env.GATEWAY_HTTP_TLS_CERT; require(tls ? 'node:https' : 'node:http').get({ host: '127.0.0.1', port: process.env.GATEWAY_HTTP_PORT || 8080, path: '/healthz', rejectUnauthorized: false }, (r) => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1))"]
CMD ["node", "dist/cli.js", "start"]
