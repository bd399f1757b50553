import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

/**
 * Uploads the report files as a workflow artifact. Outside the runner (no ACTIONS_RUNTIME_TOKEN
 * or ACTIONS_RESULTS_URL) and on any upload error this warns and carries on: the report is a
 * by-product, the result of the verification or drill does not depend on it.
 */
export async function uploadReportArtifact(o: {
  name: string;
  files: string[];
  rootDir: string;
  env: NodeJS.ProcessEnv;
  logger: Logger;
}): Promise<boolean> {
  const missing = ['ACTIONS_RUNTIME_TOKEN', 'ACTIONS_RESULTS_URL'].filter((v) => !o.env[v]);
  if (missing.length > 0) {
    o.logger.warning(
      `report-artifact is '${o.name}', but ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not set ` +
        `(they exist only inside a GitHub Actions job), so the report was not uploaded. It is at ${o.rootDir}.`,
    );
    return false;
  }
  try {
    const { DefaultArtifactClient } = await import('@actions/artifact');
    const result = await new DefaultArtifactClient().uploadArtifact(o.name, o.files, o.rootDir);
    o.logger.info(
      `Uploaded the report as artifact '${o.name}'${result.id ? ` (id ${result.id})` : ''}`,
    );
    return true;
  } catch (error) {
    o.logger.warning(
      `Could not upload the report as artifact '${o.name}': ${errorMessage(error)}. It is at ${o.rootDir}.`,
    );
    return false;
  }
}
