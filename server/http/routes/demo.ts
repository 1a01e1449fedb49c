import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import Router from '@koa/router';
import { httpError } from '../httpError.ts';
import { sendFile } from '../sendFile.ts';

const page = readFileSync(new URL('./demo.html', import.meta.url), 'utf8');

// The uppy bundle's, thumbhash's and hls.js's own files, found through node_modules like an import would find them.
const require = createRequire(import.meta.url);
function packageAsset(pkg: string, file: string, contentType: string) {
  const version = (require(`${pkg}/package.json`) as { version: string }).version;
  const resolved = require.resolve(`${pkg}/${file}`);
  return { path: resolved, size: statSync(resolved).size, contentType, etag: `"${pkg}-${version}-${path.basename(file)}"` };
}
const assets = new Map([
  ['uppy.min.js', packageAsset('uppy', 'dist/uppy.min.js', 'text/javascript; charset=utf-8')],
  ['uppy.min.css', packageAsset('uppy', 'dist/uppy.min.css', 'text/css; charset=utf-8')],
  // Decodes the placeholders (media.thumbhash) the page paints before a thumbnail arrives.
  ['thumbhash.js', packageAsset('thumbhash', 'thumbhash.js', 'text/javascript; charset=utf-8')],
  // Plays a video's `hls` output on its tile (Safari plays HLS itself).
  ['hls.min.js', packageAsset('hls.js', 'dist/hls.min.js', 'text/javascript; charset=utf-8')],
]);

/** GET /: an Uppy Dashboard that uploads here over tus. GET /assets/*: the Uppy bundle, the thumbhash decoder and hls.js it loads. */
export function demoRoutes(): Router {
  const router = new Router();
  router.get('/', (ctx) => {
    ctx.type = 'text/html; charset=utf-8';
    ctx.set('Cache-Control', 'no-cache');
    ctx.body = page;
  });
  router.get('/assets/:name', (ctx) => {
    const asset = assets.get(ctx.params.name!) ?? httpError(404, `no asset ${ctx.params.name}`);
    // The URL names no version: browsers keep the files an hour, then revalidate by ETag.
    sendFile(ctx, asset, {
      'Content-Type': asset.contentType,
      'Cache-Control': 'public, max-age=3600',
      'X-Content-Type-Options': 'nosniff',
      ETag: asset.etag,
    });
  });
  return router;
}
