import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { UploadResult } from '../storage/parts.js';
import type { Storage } from '../storage/storage.js';

/** What one destination holds after a backup run. */
export interface CopyReport {
  /** The store, safe to log (no credentials). */
  storage: string;
  /** The dump object's location in that store. */
  location: string;
  status: 'stored' | 'failed';
  /** Why the copy failed. */
  error?: string;
}

/** One destination's copy of the backup being written. */
interface Copy {
  storage: Storage;
  /** Objects stored so far, removed again when the copy fails before its manifest. */
  stored: string[];
  error?: Error;
  complete: boolean;
}

/**
 * The copies of one backup, one per destination: which objects each holds, which failed and
 * why. A copy that fails loses what it stored (nothing half-written is left looking complete);
 * the others go on.
 */
export class BackupCopies {
  private readonly copies: Copy[];

  constructor(
    stores: readonly Storage[],
    private readonly logger: Logger,
  ) {
    this.copies = stores.map((storage) => ({ storage, stored: [], complete: false }));
  }

  /** Every destination's store, in order. */
  get stores(): Storage[] {
    return this.copies.map((c) => c.storage);
  }

  /** The stores still writing (none of their steps failed). */
  get live(): Storage[] {
    return this.copies.filter((c) => c.error === undefined).map((c) => c.storage);
  }

  /** Records the dump's upload to `stores` (in that order): stored, or failed with the cause. */
  async recordUploads(
    stores: readonly Storage[],
    key: string,
    results: readonly UploadResult[],
    bytes: number,
  ): Promise<void> {
    for (const [i, result] of results.entries()) {
      const copy = this.copyOf(stores[i]);
      if (!result.ok) {
        await this.fail(copy, result.error);
        continue;
      }
      copy.stored.push(key);
      if (result.bytes !== bytes) {
        await this.fail(
          copy,
          new Error(
            `Stored ${result.bytes} bytes but the dump produced ${bytes}; the upload is incomplete.`,
          ),
        );
      }
    }
  }

  /**
   * Writes `key` with `write` to every live copy at once; a copy whose write fails is failed.
   * With `completes`, the write is the manifest: the copy is complete once it succeeded.
   */
  async writeEach(
    key: string,
    write: (storage: Storage) => Promise<void>,
    completes = false,
  ): Promise<void> {
    const live = this.copies.filter((c) => c.error === undefined);
    await Promise.all(
      live.map(async (copy) => {
        try {
          await write(copy.storage);
          copy.stored.push(key);
          copy.complete = completes;
        } catch (error) {
          await this.fail(copy, error instanceof Error ? error : new Error(errorMessage(error)));
        }
      }),
    );
  }

  /** Throws when no copy is still writing: the one destination's own error, or each named. */
  assertAnyLive(): void {
    if (this.live.length > 0) return;
    if (this.copies.length === 1 && this.copies[0].error) throw this.copies[0].error;
    const list = this.copies.map((c) => `${c.storage.description}: ${errorMessage(c.error)}`);
    throw new Error(`Every destination failed: ${list.join('; ')}`);
  }

  /** How many copies are complete (manifest written). */
  get completeCount(): number {
    return this.copies.filter((c) => c.complete).length;
  }

  /** The first failure, for a run with a single destination: its own error, as it was. */
  get firstError(): Error | undefined {
    return this.copies.find((c) => c.error !== undefined)?.error;
  }

  /** Per destination: where the dump object is, and whether the copy is complete. */
  report(objectKey: string): CopyReport[] {
    return this.copies.map((c) => ({
      storage: c.storage.description,
      location: c.storage.location(objectKey),
      status: c.complete ? 'stored' : 'failed',
      error: c.complete ? undefined : errorMessage(c.error ?? 'the backup did not finish'),
    }));
  }

  /** Removes the objects of every copy that is not complete (the run failed before its manifest). */
  async removeIncomplete(): Promise<void> {
    await Promise.all(this.copies.filter((c) => !c.complete).map((c) => this.removeStored(c)));
  }

  private copyOf(storage: Storage): Copy {
    const copy = this.copies.find((c) => c.storage === storage);
    if (copy === undefined) throw new Error(`${storage.description} is not a destination`);
    return copy;
  }

  private async fail(copy: Copy, error: Error): Promise<void> {
    copy.error ??= error;
    if (this.copies.length > 1)
      this.logger.warning(`The copy in ${copy.storage.description} failed: ${error.message}`);
    await this.removeStored(copy);
  }

  /** Objects of a copy that failed after they were stored: removed, so nothing half-written is left. */
  private async removeStored(copy: Copy): Promise<void> {
    if (copy.stored.length === 0) return;
    const keys = copy.stored.splice(0);
    await copy.storage
      .delete(keys)
      .catch((error: unknown) =>
        this.logger.warning(
          `Could not remove the partial backup objects ${keys.join(', ')} from ${copy.storage.description}: ${errorMessage(error)}`,
        ),
      );
  }
}
