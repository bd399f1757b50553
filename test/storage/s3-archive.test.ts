/**
 * Objects in S3's archive classes (GLACIER, DEEP_ARCHIVE, Intelligent-Tiering's archive tiers).
 * No S3-compatible server the tests can run (Swift's s3api among them) keeps objects in those
 * classes, so the SDK client answers here with what AWS S3 answers: the SDK's own
 * InvalidObjectState exception (HTTP 403) on GET, and the `x-amz-restore` header on HEAD.
 */
import {
  GetObjectCommand,
  HeadObjectCommand,
  InvalidObjectState,
  S3ServiceException,
  type HeadObjectCommandOutput,
} from '@aws-sdk/client-s3';
import { ConfigurationError } from '../../src/core/errors.js';
import { MemoryLogger } from '../../src/core/logger.js';
import { S3Storage, restoredCopy } from '../../src/storage/s3.js';

const KEY = 'shop/backups/20261120T051500Z-3f9a1c/dump.pgc.zst.age';

/** An S3Storage whose client answers every command with `answer`. */
function storageAnswering(answer: (command: unknown) => Promise<unknown>): S3Storage {
  const storage = new S3Storage(
    'acme-db-backups',
    'prod',
    {
      region: 'eu-west-1',
      credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'not-a-real-secret' },
    },
    new MemoryLogger(),
  );
  (storage.client as unknown as { send: (command: unknown) => Promise<unknown> }).send = answer;
  return storage;
}

function archived(fields: { StorageClass?: string; AccessTier?: string }): InvalidObjectState {
  return new InvalidObjectState({
    message: "The operation is not valid for the object's storage class",
    $metadata: { httpStatusCode: 403 },
    ...fields,
  } as ConstructorParameters<typeof InvalidObjectState>[0]);
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a failure');
}

describe('reading an archived object', () => {
  it('says the object is archived and how to restore it, not that access was denied', async () => {
    const commands: unknown[] = [];
    const storage = storageAnswering(async (command) => {
      commands.push(command);
      throw archived({ StorageClass: 'GLACIER' });
    });
    const error = await failure(storage.getStream(KEY));
    expect(commands[0]).toBeInstanceOf(GetObjectCommand);
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toContain(
      `s3://acme-db-backups/prod/${KEY} is in the GLACIER storage class`,
    );
    expect(error.message).toContain(
      `aws s3api restore-object --bucket acme-db-backups --key prod/${KEY} --restore-request '{"Days":2}'`,
    );
    expect(error.message).not.toMatch(/access denied/i);
    expect(error.message).not.toContain('s3:GetObject');
  });

  it('names the Intelligent-Tiering tier, and reads of a manifest say the same', async () => {
    const storage = storageAnswering(async () => {
      throw archived({ StorageClass: 'INTELLIGENT_TIERING', AccessTier: 'DEEP_ARCHIVE_ACCESS' });
    });
    const error = await failure(storage.getBytes('shop/backups/x/manifest.json'));
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toContain('is in the Intelligent-Tiering DEEP_ARCHIVE_ACCESS tier');
    expect(error.message).toContain("--restore-request '{}'");
  });

  it('still reports a real 403 as a permission problem', async () => {
    const storage = storageAnswering(async () => {
      throw new S3ServiceException({
        name: 'AccessDenied',
        $fault: 'client',
        message: 'Access Denied',
        $metadata: { httpStatusCode: 403 },
      });
    });
    const error = await failure(storage.getStream(KEY));
    expect(error.message).toContain('Access denied (AccessDenied)');
    expect(error.message).toContain('s3:GetObject');
  });
});

describe('the restore state of an archived object', () => {
  const headAnswering = (output: Partial<HeadObjectCommandOutput>) =>
    storageAnswering(async (command) => {
      expect(command).toBeInstanceOf(HeadObjectCommand);
      return { ContentLength: 5, LastModified: new Date(0), $metadata: {}, ...output };
    });

  it('is readable once the restore request has completed', async () => {
    const head = await headAnswering({
      StorageClass: 'GLACIER',
      Restore: 'ongoing-request="false", expiry-date="Fri, 04 Dec 2026 00:00:00 GMT"',
    }).head(KEY);
    expect(head).toMatchObject({ storageClass: 'GLACIER', restored: true });
  });

  it('is not readable while the request runs, nor without one', async () => {
    const running = await headAnswering({
      StorageClass: 'DEEP_ARCHIVE',
      Restore: 'ongoing-request="true"',
    }).head(KEY);
    expect(running).toMatchObject({ storageClass: 'DEEP_ARCHIVE', restored: false });
    const none = await headAnswering({ StorageClass: 'GLACIER' }).head(KEY);
    expect(none?.restored).toBeUndefined();
    expect(restoredCopy(undefined)).toBeUndefined();
    expect(restoredCopy('something else')).toBeUndefined();
  });
});
