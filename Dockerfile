# The server and the worker share this image; ffmpeg comes from Debian, sharp ships its own libvips.
FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev
COPY server ./server
COPY hooks ./hooks
COPY processors ./processors
COPY migrations ./migrations
COPY tsconfig.json ./
ENV NODE_ENV=production PORT=1080
EXPOSE 1080
CMD ["npm", "start"]
