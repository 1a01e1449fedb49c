import { runProcess } from './runProcess.ts';
import { startServer } from './start.ts';

/** `npm start`: the server, with the job runner in the same process unless RUN_JOBS=false. */
await runProcess('server', async (config, log) => (await startServer(config, log)).close);
