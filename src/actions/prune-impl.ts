import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as core from '@actions/core';
import { resolveName } from '../catalog/catalog.js';
import { compactTime } from '../catalog/keys.js';
import { parseMaxDelete, parseRetentionPolicy } from '../catalog/retention.js';
import { systemClock } from '../core/logger.js';
import { parseDeleteIncompleteAfter, parsePruneNames } from '../prune/options.js';
import { planDocument } from '../prune/plan.js';
import { pruneFailure, runPrune } from '../prune/prune.js';
import { pruneSummary } from '../prune/summary.js';
import { booleanInput, optionalInput } from './inputs.js';
import { Inputs, Outputs } from './names.js';
import { actionLogger, storageFromInputs } from './runtime.js';

/** The folder for the plan file: the runner's temp folder, else the workspace, else the OS temp. */
function planFolder(env: NodeJS.ProcessEnv): string {
  return env.RUNNER_TEMP || env.GITHUB_WORKSPACE || os.tmpdir();
}

export async function runPruneAction(): Promise<void> {
  const env = process.env;
  const logger = actionLogger;
  const policy = parseRetentionPolicy({
    keepLast: optionalInput(Inputs.KeepLast),
    keepHourly: optionalInput(Inputs.KeepHourly),
    keepDaily: optionalInput(Inputs.KeepDaily),
    keepWeekly: optionalInput(Inputs.KeepWeekly),
    keepMonthly: optionalInput(Inputs.KeepMonthly),
    keepYearly: optionalInput(Inputs.KeepYearly),
    keepWithin: optionalInput(Inputs.KeepWithin),
    keepKind: optionalInput(Inputs.KeepKind),
    timezone: optionalInput(Inputs.Timezone),
  });
  const maxDelete = parseMaxDelete(optionalInput(Inputs.MaxDelete) ?? '50%');
  const deleteIncompleteAfterSeconds = parseDeleteIncompleteAfter(
    optionalInput(Inputs.DeleteIncompleteAfter) ?? '24h',
    Inputs.DeleteIncompleteAfter,
  );
  const dryRun = booleanInput(Inputs.DryRun, false);
  const bypassGovernanceRetention = booleanInput(Inputs.BypassGovernanceRetention, false);
  const storage = await storageFromInputs(logger);
  const nameInput = optionalInput(Inputs.Name);
  const names = nameInput
    ? parsePruneNames(nameInput, Inputs.Name)
    : [await resolveName(storage, undefined)];

  const report = await runPrune(
    { names, policy, maxDelete, deleteIncompleteAfterSeconds, dryRun, bypassGovernanceRetention },
    { storage, logger, clock: systemClock },
  );

  const folder = planFolder(env);
  await mkdir(folder, { recursive: true });
  const planPath = path.join(folder, `prune-plan-${compactTime(new Date(report.now))}.json`);
  await writeFile(planPath, `${JSON.stringify(planDocument(report), null, 2)}\n`);
  logger.info(`Plan written to ${planPath}`);

  core.setOutput(Outputs.Kept, String(report.kept));
  core.setOutput(Outputs.Deleted, String(report.deleted));
  core.setOutput(Outputs.PlanPath, planPath);
  core.setOutput(Outputs.FreedBytes, String(report.freedBytes));
  await core.summary.addRaw(pruneSummary(report, planPath)).write();

  const failure = pruneFailure(report);
  if (failure) throw failure;
}
