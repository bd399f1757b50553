import { runVerifyAction } from './verify-impl.js';
import { runAction } from './runtime.js';

await runAction(runVerifyAction);
