# syntax=docker/dockerfile:1
# Multi-stage: build with dev dependencies (tsc), run on a slim Node 24 LTS image
# with production dependencies only. test/production/process.test.ts runs the
# same steps without Docker (install --omit=dev, the CMD, the HEALTHCHECK).

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
# tsc, and the dashboard page (web/ → dist/web/, served at /).
RUN npm run build

FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY scripts/health-probe.mjs ./scripts/health-probe.mjs
# The image's unprivileged user; nothing under /app is writable by it.
USER node
EXPOSE 8080
# main.ts drains on SIGTERM (health NOT_SERVING, jobs finish within shutdown_grace) and exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 CMD ["node", "scripts/health-probe.mjs"]
# Exec form: node runs as PID 1 and receives SIGTERM itself (no shell in between).
CMD ["node", "dist/src/main.js"]
