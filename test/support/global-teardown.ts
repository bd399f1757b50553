import type { ScratchCluster } from '../../src/postgres/cluster.js';
import type { SwiftServer } from './swift.js';

export default async function globalTeardown(): Promise<void> {
  const shared = globalThis as { __swift?: SwiftServer; __cluster?: ScratchCluster };
  await Promise.all([shared.__swift?.stop(), shared.__cluster?.stop()]);
}
