# The server and the worker share this image; ffmpeg and heif-convert (libheif-examples, for HEIC) come
# from Debian, sharp ships its own libvips.
# Node 22: Node 20 is past its end of life, and AWS SDK releases from 2027 need 22. The lock file
# still installs on Node 20 (package.json engines), which development machines run.
FROM node:22-bookworm-slim
# tini as PID 1 passes SIGTERM on to node (which then finishes running requests and jobs) and
# reaps orphaned children such as an ffmpeg whose parent died; node itself is not built to be PID 1.
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg libheif-examples tini && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev
COPY server ./server
COPY hooks ./hooks
COPY processors ./processors
COPY migrations ./migrations
COPY tsconfig.json ./
# The code stays root's and read-only; the embedded default (no DATABASE_URL, no S3_BUCKET) keeps
# its database and files in /data, the one place the node user writes (a named volume there
# starts with this ownership).
RUN mkdir /data && chown node:node /data
ENV NODE_ENV=production PORT=1080 DATA_DIR=/data
USER node
EXPOSE 1080
ENTRYPOINT ["/usr/bin/tini", "--"]
# package.json's `start`, without npm in between (npm does not pass SIGTERM on). The worker
# service runs package.json's `worker` the same way (docker-compose.yml sets its command).
CMD ["node", "--max-semi-space-size=1", "--no-warnings", "--import", "tsx", "server/main/server.ts"]
