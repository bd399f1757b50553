import v8 from 'node:v8';
import vm from 'node:vm';

/** Bytes streamed between two collections of V8's young generation. */
const RECLAIM_INTERVAL = 8 * 1024 * 1024;

/** Runs a collection of V8's young generation. */
export type Collect = () => void;

/** Counts the bytes of one chunk a long stream moved. */
export type Reclaim = (bytes: number) => void;

let young: Collect | null | undefined;

/**
 * V8's young-generation collection, or null where this Node cannot give it. Node exposes it
 * only under `--expose-gc`, a flag an action cannot pass to the node that runs it; set at run
 * time, the flag makes `gc` a global of contexts created afterwards (Jest's leak detector gets it
 * the same way). Written here: the `expose-gc` package is these same few lines.
 */
export function youngCollection(): Collect | null {
  if (young === undefined) {
    try {
      v8.setFlagsFromString('--expose-gc');
      const gc: unknown = vm.runInNewContext('gc');
      young = typeof gc === 'function' ? () => gc({ type: 'minor' }) : null;
    } catch {
      young = null;
    }
  }
  return young;
}

/**
 * A counter to call with the size of every chunk a long stream moves (an object read, a backup
 * uploaded): it collects V8's young generation after every `interval` bytes. `node:crypto` (age)
 * and the HTTP client allocate a new buffer per chunk, and V8 frees such buffers only after about
 * 64 MiB more of them were allocated, so a step's peak memory would rise with the size of the
 * database; collected while young, they are freed every few MiB and their memory reused.
 */
export function reclaimer(
  interval = RECLAIM_INTERVAL,
  collect: Collect | null = youngCollection(),
): Reclaim {
  if (!collect) return () => undefined;
  let since = 0;
  return (bytes) => {
    since += bytes;
    if (since < interval) return;
    since = 0;
    collect();
  };
}
