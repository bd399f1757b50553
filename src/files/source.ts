/** Where file backups read from: an S3-compatible bucket or prefix, or a local folder. */
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { ConfigurationError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { LocalStorage, parseStorageLocation, type S3Settings } from '../storage/open.js';
import type { Storage } from '../storage/storage.js';

/** One file as the source lists it. */
export interface SourceFile {
  /** Relative to the source's prefix or folder, `/`-separated. */
  key: string;
  size: number;
  lastModified: Date;
  /** The object's ETag without quotes (S3 only). */
  etag?: string;
}

export interface OpenedFile {
  body: Readable;
  /** The object's content type (S3 only). */
  contentType?: string;
}

/**
 * A read-only tree of files. `list` yields every file in key order; `open` streams one. Keys
 * that end in `/` (S3 folder markers of zero bytes) are not files and are never listed.
 */
export interface FileSource {
  /** Safe to log (no credentials). */
  readonly description: string;
  readonly type: 's3' | 'folder';
  list(): AsyncIterable<SourceFile>;
  open(key: string): Promise<OpenedFile>;
}

/** A local folder, read through the folder store (which never lists its own partial files). */
export class FolderSource implements FileSource {
  readonly type = 'folder';
  readonly description: string;
  constructor(private readonly folder: Storage) {
    this.description = folder.description;
  }
  async *list(): AsyncIterable<SourceFile> {
    for await (const o of this.folder.list('')) {
      yield { key: o.key, size: o.size, lastModified: o.lastModified };
    }
  }
  async open(key: string): Promise<OpenedFile> {
    return { body: await this.folder.getStream(key) };
  }
}

/** A bucket and prefix read with the S3 API directly, for the ETag and content type. */
export class S3Source implements FileSource {
  readonly type = 's3';
  readonly description: string;
  private readonly prefix: string;

  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    prefix: string,
    description: string,
  ) {
    this.prefix = prefix === '' ? '' : `${prefix}/`;
    this.description = description;
  }

  async *list(): AsyncIterable<SourceFile> {
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: this.prefix,
          ContinuationToken: token,
        }),
      );
      for (const o of page.Contents ?? []) {
        if (!o.Key || o.Key.endsWith('/')) continue;
        yield {
          key: o.Key.slice(this.prefix.length),
          size: o.Size ?? 0,
          lastModified: o.LastModified ?? new Date(0),
          etag: o.ETag?.replace(/"/g, ''),
        };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async open(key: string): Promise<OpenedFile> {
    const response = await this.client.send(
      new GetObjectCommand({ Bucket: this.bucket, Key: `${this.prefix}${key}` }),
    );
    if (!(response.Body instanceof Readable)) {
      throw new Error(
        `The S3 client returned no readable body for s3://${this.bucket}/${this.prefix}${key}.`,
      );
    }
    return { body: response.Body, contentType: response.ContentType };
  }
}

/**
 * A source folder must be there: one that is missing (a wrong path, an unmounted disk) would
 * otherwise read as empty, and the backup would record every file as deleted.
 */
async function checkFolder(folder: string): Promise<void> {
  const where = resolve(folder);
  let isFolder: boolean;
  try {
    isFolder = (await stat(where)).isDirectory();
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new ConfigurationError(
      `The source folder ${where} ${missing ? 'does not exist' : `cannot be read: ${errorMessage(error)}`}.`,
    );
  }
  if (!isFolder) throw new ConfigurationError(`The source ${where} is not a folder.`);
}

/** Opens the source a location names (`s3://bucket[/prefix]` or a folder). */
export async function openFileSource(
  location: string,
  s3: S3Settings,
  logger: Logger,
): Promise<FileSource> {
  const parsed = parseStorageLocation(location);
  if (parsed.type === 'local') {
    await checkFolder(parsed.path);
    return new FolderSource(new LocalStorage(parsed.path, logger));
  }
  const { S3Storage } = await import('../storage/s3.js');
  const store = new S3Storage(parsed.bucket, parsed.prefix, s3, logger);
  return new S3Source(store.client, parsed.bucket, parsed.prefix, store.description);
}
