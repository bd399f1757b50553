import { runBackupAction } from './backup-impl.js';
import { runAction } from './runtime.js';

await runAction(runBackupAction);
