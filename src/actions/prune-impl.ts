import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as core from '@actions/core';
import { resolveName } from '../catalog/catalog.js';
import { compactTime } from '../catalog/keys.js';
import { systemClock } from '../core/logger.js';
import { pruneOptions } from '../options/prune.js';
import { storageOption } from '../options/shared.js';
import { ALL_NAMES } from '../prune/options.js';
import { planDocument } from '../prune/plan.js';
import { pruneFailure, runPrune, type PruneReport } from '../prune/prune.js';
import { pruneSummary } from '../prune/summary.js';
import { inputs, optionalInput } from './inputs.js';
import { readAlertSettings, sendAlerts } from './alerting.js';
import { errorMessage } from '../core/errors.js';
import { formatBytes } from '../core/streams.js';
import { isCatalogName } from '../catalog/keys.js';
import type { JobOutcome } from '../report/alerts.js';
import type { Storage } from '../storage/storage.js';
import { Inputs, Outputs } from './names.js';
import { actionLogger } from './runtime.js';

/** The folder for the plan file: the runner's temp folder, else the workspace, else the OS temp. */
function planFolder(env: NodeJS.ProcessEnv): string {
  return env.RUNNER_TEMP || env.GITHUB_WORKSPACE || os.tmpdir();
}

/** What a prune alert is about: `label` names the issue; run records go under `names`. */
interface PruneSubject {
  label: string;
  names: string[];
  storage?: Storage;
}

const PRUNE_NEXT_STEP =
  'Nothing is deleted while prune fails. Read the reason above: a refusal by max-delete means ' +
  'the policy would delete more than allowed (check the policy and the catalog, then raise ' +
  'max-delete for one run if it is right); fix the cause and re-run the workflow.';

export async function runPruneAction(): Promise<void> {
  const env = process.env;
  const logger = actionLogger;
  const alerts = readAlertSettings('backup-prune');
  const listed = (optionalInput(Inputs.Name) ?? '')
    .split(/[\n,]/)
    .map((n) => n.replace(/#.*$/, '').trim())
    .filter((n) => n !== '');
  const subject: PruneSubject = {
    label: listed.length > 0 ? listed.join(', ') : 'database',
    names: listed.filter(isCatalogName),
  };
  const alert = (outcome: Omit<JobOutcome, 'action' | 'name'>): Promise<unknown> => {
    const name = subject.label;
    return sendAlerts(
      { action: 'prune', name, ...outcome },
      {
        settings: alerts,
        env,
        logger,
        storage: subject.storage,
        names: subject.names,
        title: `Prune failed: ${name}`,
        warningTitle: `Prune warning: ${name}`,
      },
    );
  };
  let report: PruneReport;
  try {
    report = await prune(env, subject);
  } catch (error) {
    await alert({
      status: 'failed',
      message: errorMessage(error),
      warnings: [],
      nextStep: PRUNE_NEXT_STEP,
    });
    throw error;
  }
  const failure = pruneFailure(report);
  await alert(
    failure
      ? { status: 'failed', message: failure.message, warnings: [], nextStep: PRUNE_NEXT_STEP }
      : {
          status: 'passed',
          message:
            `${report.dryRun ? 'Dry run: would delete' : 'Deleted'} ${report.deleted} backup(s), ` +
            `kept ${report.kept}, ${formatBytes(report.freedBytes)} freed.`,
          warnings: [],
        },
  );
  if (failure) throw failure;
}

/** Plans and applies the retention policy of the inputs; writes the plan, outputs and summary. */
async function prune(env: NodeJS.ProcessEnv, subject: PruneSubject): Promise<PruneReport> {
  const logger = actionLogger;
  const options = pruneOptions(inputs);
  const storage = await storageOption(inputs, logger);
  subject.storage = storage;
  const names = options.names ?? [await resolveName(storage, undefined)];
  if (names === ALL_NAMES) {
    subject.names = [];
  } else {
    subject.names = [...names];
    if (!options.names) subject.label = names.join(', ');
  }

  const report = await runPrune({ ...options, names }, { storage, logger, clock: systemClock });
  subject.names = report.names.map((n) => n.name);

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
  return report;
}
