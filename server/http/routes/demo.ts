import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import Router from '@koa/router';
import { httpError } from '../httpError.ts';
import { sendFile } from '../sendFile.ts';

const page = readFileSync(new URL('./demo.html', import.meta.url), 'utf8');

// The uppy and hls.js bundles' own dist files, found through node_modules like an import would find them.
const require = createRequire(import.meta.url);
function distAsset(pkg: string, name: string, contentType: string) {
  const version = (require(`${pkg}/package.json`) as { version: string }).version;
  const file = require.resolve(`${pkg}/dist/${name}`);
  return { path: file, size: statSync(file).size, contentType, etag: `"${pkg}-${version}-${name}"` };
}
const assets = new Map([
  ['uppy.min.js', distAsset('uppy', 'uppy.min.js', 'text/javascript; charset=utf-8')],
  ['uppy.min.css', distAsset('uppy', 'uppy.min.css', 'text/css; charset=utf-8')],
  // Plays a video's `hls` output on its tile (Safari plays HLS itself).
  ['hls.min.js', distAsset('hls.js', 'hls.min.js', 'text/javascript; charset=utf-8')],
]);

/** GET /: an Uppy Dashboard that uploads here over tus. GET /assets/*: the Uppy and hls.js bundles it loads. */
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
