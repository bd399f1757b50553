import { runRestoreDrillAction } from './restore-drill-impl.js';
import { runAction } from './runtime.js';

await runAction(runRestoreDrillAction);
