import { runPruneAction } from './prune-impl.js';
import { runAction } from './runtime.js';

await runAction(runPruneAction);
