import { runBackupFilesAction } from './backup-files-impl.js';
import { runAction } from './runtime.js';

await runAction(runBackupFilesAction);
