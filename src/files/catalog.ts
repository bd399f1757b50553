/** The file backups of a catalog name in a store: `<name>/files/<id>/manifest.json` and archives. */
import {
  isBackupId,
  fileBackupsPrefix,
  fileBackupPrefix,
  fileManifestKey,
} from '../catalog/keys.js';
import { ConfigurationError } from '../core/errors.js';
import type { Storage, StoredObject } from '../storage/storage.js';
import { parseFileManifest, type FileManifest } from './manifest.js';

/** One backup folder under `<name>/files/`: its objects, and its manifest once complete. */
export interface FileBackupFolder {
  id: string;
  objects: StoredObject[];
  manifest?: FileManifest;
}

/** The archive key of a file backup: `<name>/files/<id>/files.tar.zst[.age]`. */
export function archiveKey(name: string, id: string, encrypted: boolean): string {
  return `${fileBackupPrefix(name, id)}files.tar.zst${encrypted ? '.age' : ''}`;
}

/** Every folder under `<name>/files/` whose name is a backup id, oldest id first. */
export async function listFileBackups(storage: Storage, name: string): Promise<FileBackupFolder[]> {
  const prefix = fileBackupsPrefix(name);
  const folders = new Map<string, StoredObject[]>();
  for await (const object of storage.list(prefix)) {
    const id = object.key.slice(prefix.length).split('/')[0];
    if (!isBackupId(id)) continue;
    const list = folders.get(id) ?? [];
    list.push(object);
    folders.set(id, list);
  }
  const result: FileBackupFolder[] = [];
  for (const [id, objects] of [...folders].sort(([a], [b]) => a.localeCompare(b))) {
    const key = fileManifestKey(name, id);
    const data = objects.some((o) => o.key === key) ? await storage.getBytes(key) : undefined;
    result.push({
      id,
      objects,
      manifest: data ? parseFileManifest(data, storage.location(key)) : undefined,
    });
  }
  return result;
}

/** Complete file backups, newest finish time first. */
export function completeFileBackups(folders: FileBackupFolder[]): FileManifest[] {
  return folders
    .flatMap((f) => (f.manifest ? [f.manifest] : []))
    .sort((a, b) => b.finishedAt.localeCompare(a.finishedAt) || b.id.localeCompare(a.id));
}

/** The file backup `id` asks for (`latest` or absent: the newest complete one). */
export async function selectFileBackup(
  storage: Storage,
  name: string,
  id: string | undefined,
): Promise<FileManifest> {
  const complete = completeFileBackups(await listFileBackups(storage, name));
  const chosen = !id || id === 'latest' ? complete[0] : complete.find((m) => m.id === id);
  if (chosen) return chosen;
  throw new ConfigurationError(
    !id || id === 'latest'
      ? `No complete file backup of '${name}' in ${storage.description}. Check the storage and name inputs.`
      : `No complete file backup '${id}' of '${name}' in ${storage.description}.`,
  );
}
