import { ConfigurationError } from '../core/errors.js';
import { OptionReader } from '../options/reader.js';
import { splitList } from '../core/lists.js';
import { parseRecipients } from '../crypto/age.js';
import { resolvePostgresVersionInput } from '../postgres/tools.js';
import type { Decryption } from '../restore/fetch.js';

/** Reads one option by its kebab-case name (an action input, a CLI flag); undefined when unset. */
export type ReadOption = (key: string) => string | undefined;

/** What both extract and export take: which backup, and which of its tables. */
export interface TableSelection {
  /** Catalog name; default: the only name in the store. */
  name?: string;
  /** Default: the newest complete backup (other than a pre-restore safety backup). */
  backupId?: string;
  decryption?: Decryption;
  /** `pg_dump -t` patterns; a partitioned table brings its partitions. */
  tables: string[];
  /** Parallel pg_restore jobs into the scratch server. */
  jobs: number;
  /** `auto`, or the PostgreSQL major of the client tools (and the least scratch server major). */
  postgresVersion: 'auto' | number;
  /**
   * A new database on a server to use as the scratch copy instead of a server the step starts
   * (created, and dropped afterwards): a supabase/postgres service container for a Supabase backup.
   */
  scratchUrl?: string;
}

export interface ExtractOptions extends TableSelection {
  /** The database the tables go into (a new schema of it). */
  targetUrl: string;
  /** Must equal the target database's name, or nothing is done. */
  confirm?: string;
  /** Default: `recovered_` plus the backup id, lower case, non-alphanumerics as `_`. */
  extractSchema?: string;
  /** Drop an earlier extract's schema of that name first (in the same transaction). */
  replaceExtractSchema: boolean;
  /** Compare each extracted table that has a primary key with its live counterpart. */
  compare: boolean;
  /** Rows per table written to the comparison's CSV. */
  compareLimit: number;
}

export type ExportFormat = 'csv' | 'jsonl';

export interface ExportOptions extends TableSelection {
  format: ExportFormat;
  /** age recipients of the exports; default: the backup's own. */
  recipients: string[];
}

export const EXTRACT_OPTION_KEYS = {
  tables: 'tables',
  targetUrl: 'target-url',
  confirm: 'confirm',
  extractSchema: 'extract-schema',
  replaceExtractSchema: 'replace-extract-schema',
  compare: 'compare',
  compareLimit: 'compare-limit',
  exportFormat: 'export-format',
  recipients: 'encryption-recipients',
  name: 'name',
  backupId: 'backup-id',
  jobs: 'jobs',
  postgresVersion: 'postgres-version',
  scratchUrl: 'scratch-url',
} as const;

const K = EXTRACT_OPTION_KEYS;

/** The shared option parsers over an accessor (the readers of both front doors). */
function reader(read: ReadOption): OptionReader {
  return new OptionReader({ value: read, secret: read });
}

/** The backup and the tables, as extract and export read them. */
export function readTableSelection(read: ReadOption, decryption?: Decryption): TableSelection {
  const tables = splitList(read(K.tables) ?? '');
  if (tables.length === 0) {
    throw new ConfigurationError(
      `Input '${K.tables}' is empty: give the tables to bring back as pg_dump -t patterns, e.g. "public.orders, public.payment".`,
    );
  }
  return {
    name: read(K.name),
    backupId: read(K.backupId),
    decryption,
    tables,
    jobs: reader(read).integer(K.jobs, 2, 1, 64),
    postgresVersion: resolvePostgresVersionInput(read(K.postgresVersion) ?? 'auto'),
    scratchUrl: read(K.scratchUrl),
  };
}

/** The options of an extract. `target-url` is required here: the CLI fills it from DATABASE_URL. */
export function readExtractOptions(read: ReadOption, decryption?: Decryption): ExtractOptions {
  const targetUrl = read(K.targetUrl);
  if (targetUrl === undefined) {
    throw new ConfigurationError(
      `mode 'extract' writes the tables into a new schema of the database given by ${K.targetUrl}, and ${K.targetUrl} is empty.`,
    );
  }
  const extractSchema = read(K.extractSchema);
  if (extractSchema !== undefined) checkSchemaName(extractSchema);
  return {
    ...readTableSelection(read, decryption),
    targetUrl,
    confirm: read(K.confirm),
    extractSchema,
    replaceExtractSchema: reader(read).boolean(K.replaceExtractSchema, false),
    compare: reader(read).boolean(K.compare, true),
    compareLimit: reader(read).integer(K.compareLimit, 1000, 0, 1_000_000),
  };
}

/** The options of an export. */
export function readExportOptions(read: ReadOption, decryption?: Decryption): ExportOptions {
  const format = read(K.exportFormat) ?? 'csv';
  if (format !== 'csv' && format !== 'jsonl') {
    throw new ConfigurationError(
      `Input '${K.exportFormat}' must be one of csv, jsonl, got '${format}'.`,
    );
  }
  return {
    ...readTableSelection(read, decryption),
    format,
    recipients: parseRecipients(read(K.recipients) ?? ''),
  };
}

/** The default extract schema of a backup: `recovered_20261121t051500z_3f9a1c`. */
export function defaultExtractSchema(backupId: string): string {
  return `recovered_${backupId.toLowerCase().replace(/[^a-z0-9]/g, '_')}`;
}

/** A schema name the extract may create: a plain identifier, not a system schema. */
export function checkSchemaName(schema: string): void {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema) || /^pg_/.test(schema)) {
    throw new ConfigurationError(
      `Input '${K.extractSchema}' must be a new schema's name in lower case (letters, digits, _; at most 63, not pg_...), got '${schema}'.`,
    );
  }
  if (['public', 'information_schema'].includes(schema)) {
    throw new ConfigurationError(
      `Input '${K.extractSchema}' cannot be '${schema}': the extract goes into a schema of its own.`,
    );
  }
}
