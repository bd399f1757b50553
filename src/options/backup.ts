import { parseCompression, type BackupOptions } from '../backup/backup.js';
import { BACKUP_KINDS, type BackupKind, type DumpFormat } from '../catalog/manifest.js';
import { parseKeepUntil } from '../core/duration.js';
import { parseRecipients } from '../crypto/age.js';
import { resolveConnection } from '../postgres/connection.js';
import type { FrontDoor, OptionReader } from './reader.js';

const FORMATS: readonly DumpFormat[] = ['custom', 'directory'];
const ROW_COUNTS = ['exact', 'estimate', 'off'] as const;

/** The backup's options; `kind` is the front door's default kind (a workflow runs on schedule). */
export function backupOptions(
  read: OptionReader,
  door: FrontDoor,
  kind: BackupKind,
): BackupOptions {
  const recipients = parseRecipients(read.string('encryption-recipients') ?? '');
  const passphrase = read.secret('encryption-passphrase');
  const keepUntil = read.string('keep-until');
  return {
    connection: resolveConnection(read.secret('database-url'), door.env),
    name: read.trimmed('name'),
    format: read.choice('format', FORMATS, 'custom'),
    jobs: read.integer('jobs', 2, 1, 64),
    compression: parseCompression(read.string('compression')),
    selection: {
      schemas: read.list('schemas'),
      excludeSchemas: read.list('exclude-schemas'),
      excludeTableData: read.list('exclude-table-data'),
    },
    globals: read.boolean('globals', false),
    encryption: recipients.length > 0 || passphrase ? { recipients, passphrase } : undefined,
    kind: read.choice('kind', BACKUP_KINDS, kind),
    labels: read.labels('labels'),
    keepUntil: keepUntil ? parseKeepUntil(keepUntil, door.now, 'keep-until') : undefined,
    rowCounts: read.choice('row-counts', ROW_COUNTS, 'exact'),
    sizeChangeThreshold: read.number('size-change-threshold', 20),
    git: door.git,
  };
}
