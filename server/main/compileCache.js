// Preloaded by every command (`node --import ./server/main/compileCache.js …`). Node's compile
// cache keeps each module's stripped and compiled code, so a start that finds all its modules
// there never loads Node's TypeScript stripper, which would otherwise stay in memory for the life
// of the process and of each media thread. JavaScript, as a TypeScript file would load the stripper
// itself. The cache is in NODE_COMPILE_CACHE, else in the system's temp folder; one that cannot be
// written only goes unused.
import { enableCompileCache } from 'node:module';

enableCompileCache();
