import { createHash } from 'node:crypto';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { runProcess } from '../../src/core/process.js';
import { ArchiveCoalescer } from '../../src/postgres/archive.js';
import type { Storage } from '../../src/storage/storage.js';
import { MACHINE_BIN_DIR } from './embedded.js';

/**
 * Restores a backup with standard tools alone, as the README tells a person to on the day
 * nothing else works: download, `age -d`, `zstd -d`, `pg_restore` (or `tar -x` first for the
 * directory format). For a custom-format archive, also counts its data chunks.
 */
export async function restoreByHand(options: {
  storage: Storage;
  objectKey: string;
  identity?: string;
  targetUrl: string;
}): Promise<{ sha256: string; dataChunks?: number }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'by-hand-'));
  try {
    let file = path.join(dir, path.basename(options.objectKey));
    await pipeline(await options.storage.getStream(options.objectKey), createWriteStream(file));
    const sha256 = createHash('sha256').update(readFileSync(file)).digest('hex');
    if (file.endsWith('.age')) {
      const keyFile = path.join(dir, 'key.txt');
      writeFileSync(keyFile, `${options.identity}\n`, { mode: 0o600 });
      const out = file.slice(0, -4);
      const r = await runProcess('age', ['-d', '-i', keyFile, '-o', out, file]);
      if (r.code !== 0) throw new Error(`age -d failed: ${r.stderr}`);
      file = out;
    }
    if (file.endsWith('.zst')) {
      const out = file.slice(0, -4);
      const r = await runProcess('zstd', ['-d', '-q', '-o', out, file]);
      if (r.code !== 0) throw new Error(`zstd -d failed: ${r.stderr}`);
      file = out;
    }
    const directoryFormat = file.endsWith('.tar');
    if (directoryFormat) {
      const out = path.join(dir, 'dumpdir');
      const r = await runProcess('sh', [
        '-c',
        `mkdir -p "${out}" && tar -xf "${file}" -C "${out}"`,
      ]);
      if (r.code !== 0) throw new Error(`tar -x failed: ${r.stderr}`);
      file = out;
    }
    const r = await runProcess(path.join(MACHINE_BIN_DIR, 'pg_restore'), [
      '--no-owner',
      '--no-acl',
      '--exit-on-error',
      '-d',
      options.targetUrl,
      file,
    ]);
    if (r.code !== 0) throw new Error(`pg_restore failed: ${r.stderr}`);
    if (directoryFormat) return { sha256 };
    const reader = new ArchiveCoalescer();
    reader.update(readFileSync(file));
    reader.final();
    return { sha256, dataChunks: reader.chunksIn };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
