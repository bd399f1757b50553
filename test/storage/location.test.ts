import { resolve } from 'node:path';
import { ConfigurationError } from '../../src/core/errors.js';
import { MemoryLogger } from '../../src/core/logger.js';
import { LocalStorage } from '../../src/storage/local.js';
import { openStorage, parseStorageLocation } from '../../src/storage/open.js';
import { S3Storage } from '../../src/storage/s3.js';

describe('parseStorageLocation', () => {
  it.each([
    ['s3://my-bucket/team/db', { type: 's3', bucket: 'my-bucket', prefix: 'team/db' }],
    ['s3://my-bucket/team/db/', { type: 's3', bucket: 'my-bucket', prefix: 'team/db' }],
    ['s3://my-bucket', { type: 's3', bucket: 'my-bucket', prefix: '' }],
    ['s3://my-bucket/', { type: 's3', bucket: 'my-bucket', prefix: '' }],
    ['S3://my.bucket/x', { type: 's3', bucket: 'my.bucket', prefix: 'x' }],
    ['  s3://b12/x  ', { type: 's3', bucket: 'b12', prefix: 'x' }],
    ['file:///var/backups/db', { type: 'local', path: '/var/backups/db' }],
    ['file:///var/backups/with%20space', { type: 'local', path: '/var/backups/with space' }],
    ['/var/backups/db', { type: 'local', path: '/var/backups/db' }],
    ['./backups', { type: 'local', path: './backups' }],
    ['../backups', { type: 'local', path: '../backups' }],
    ['.', { type: 'local', path: '.' }],
  ])('reads %s', (input, expected) => {
    expect(parseStorageLocation(input)).toEqual(expected);
  });

  it.each([
    ['', /it is empty/],
    ['s3://', /bucket name is missing/],
    ['s3:///prefix', /bucket name is missing/],
    ['s3://a/x', /not a valid bucket name/],
    ['s3://bad bucket/x', /not a valid bucket name/],
    ['s3://b12/a//b', /empty segment/],
    ['s3://b12/a/../b', /'\.' or '\.\.'/],
    ['s3://b12/a?versionId=1', /'\?' or '#'/],
    ['gs://bucket/x', /scheme 'gs:\/\/' is not supported/],
    ['https://s3.amazonaws.com/bucket', /scheme 'https:\/\/' is not supported/],
    ['file://host/x', /not a local file URL/],
    [
      'my-bucket/db',
      /no scheme; for a bucket write s3:\/\/my-bucket\/db, for a folder write \.\/my-bucket\/db/,
    ],
    ['~/backups', /'~' is not expanded/],
  ])('refuses %j', (input, why) => {
    let error: unknown;
    try {
      parseStorageLocation(input);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigurationError);
    const message = (error as Error).message;
    expect(message).toMatch(why);
    expect(message).toContain(`'${input}'`);
    expect(message).toContain('s3://bucket/prefix');
  });

  it('never quotes credentials given in the location', () => {
    let message = '';
    try {
      parseStorageLocation('s3://AKIAEXAMPLE:sup3r-secret@bucket/x');
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/credentials do not belong in the location/);
    expect(message).not.toContain('sup3r-secret');
    expect(message).not.toContain('AKIAEXAMPLE');
  });
});

describe('openStorage', () => {
  const logger = new MemoryLogger();

  it('opens a bucket with the given settings', async () => {
    const storage = await openStorage(
      's3://bucket-1/team',
      { endpoint: 'http://127.0.0.1:9', region: 'eu-west-1' },
      logger,
    );
    expect(storage).toBeInstanceOf(S3Storage);
    expect(storage.description).toBe('s3://bucket-1/team (endpoint http://127.0.0.1:9)');
    expect(storage.location('a/b')).toBe('s3://bucket-1/team/a/b');
    (storage as S3Storage).destroy();
  });

  it('describes AWS by region and keeps endpoint passwords out of the description', async () => {
    const aws = await openStorage('s3://bucket-1', { region: 'eu-central-1' }, logger);
    expect(aws.description).toBe('s3://bucket-1 (AWS S3 in eu-central-1)');
    (aws as S3Storage).destroy();
    const custom = await openStorage(
      's3://bucket-1',
      { endpoint: 'http://user:pw-123@127.0.0.1:9' },
      logger,
    );
    expect(custom.description).not.toContain('pw-123');
    (custom as S3Storage).destroy();
  });

  it('refuses an endpoint that is not an http(s) URL', async () => {
    await expect(openStorage('s3://bucket-1', { endpoint: 'minio:9000' }, logger)).rejects.toThrow(
      ConfigurationError,
    );
    await expect(openStorage('s3://bucket-1', { endpoint: 'not a url' }, logger)).rejects.toThrow(
      /not a URL/,
    );
  });

  it('opens a folder, resolving a relative path', async () => {
    const storage = await openStorage('./some/folder', {}, logger);
    expect(storage).toBeInstanceOf(LocalStorage);
    expect(storage.location('a/b')).toBe(resolve('some/folder/a/b'));
    expect(storage.description).toBe(`local folder ${resolve('some/folder')}`);
  });
});
