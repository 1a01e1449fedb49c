# The server and the worker share this image; ffmpeg and heif-convert (libheif-examples, for HEIC) come
# from Debian, sharp ships its own libvips.
# Node 24 on Debian 12 (bookworm), as the tests run: the Node whose binary package.json gives npm
# scripts, and Debian 12's ffmpeg. Node 24's maintenance ends within bookworm's LTS; Node 26 would
# outlive it, and so bring Debian 13 and its newer ffmpeg into the image and the tests.
FROM node:24-bookworm-slim
# tini as PID 1 passes SIGTERM on to node (which then finishes running requests and jobs) and
# reaps orphaned children such as an ffmpeg whose parent died; node itself is not built to be PID 1.
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg libheif-examples tini libjemalloc2 && rm -rf /var/lib/apt/lists/* \
  && ln -s /usr/lib/$(uname -m)-linux-gnu/libjemalloc.so.2 /usr/local/lib/libjemalloc.so.2
# jemalloc instead of glibc's malloc for every process of the image: libvips (sharp, on the media
# threads) allocates and frees its pixel buffers from several threads, and glibc's per-thread arenas
# keep the freed memory fragmented, so the RSS of a process that runs media jobs keeps rising for
# hours though nothing leaks (sharp's docs advise the same; measured in docs/benchmarks.md#soak).
ENV LD_PRELOAD=/usr/local/lib/libjemalloc.so.2
WORKDIR /app
COPY package.json package-lock.json ./
# The image has its Node: the binary npm installs for machines whose own is older goes again.
RUN npm ci --omit=dev && rm -rf node_modules/node-linux-* node_modules/.bin/node
COPY server ./server
COPY hooks ./hooks
COPY processors ./processors
COPY migrations ./migrations
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
CMD ["node", "--max-semi-space-size=1", "--no-warnings", "--import", "./server/main/compileCache.js", "server/main/server.ts"]
