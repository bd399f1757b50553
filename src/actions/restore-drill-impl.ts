import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as core from '@actions/core';
import { resolveName } from '../catalog/catalog.js';
import { isCatalogName } from '../catalog/keys.js';
import type { JobOutcome } from '../report/alerts.js';
import type { Storage } from '../storage/storage.js';
import { compactTime } from '../catalog/keys.js';
import { errorMessage } from '../core/errors.js';
import { systemClock, type Logger } from '../core/logger.js';
import { findOnPath } from '../core/process.js';
import { removeLeftovers } from '../drill/cleanup.js';
import { runExport } from '../extract/export.js';
import { runExtract } from '../extract/extract.js';
import { readExportOptions, readExtractOptions } from '../extract/options.js';
import { exportSummary, extractSummary } from '../extract/summary.js';
import { runDrill, runRestore, type DrillDeps, type DrillResult } from '../drill/drill.js';
import { drillSummary } from '../drill/summary.js';
import type { FrontDoor } from '../options/reader.js';
import {
  decryptionOption,
  drillOptions,
  restoreOptions,
  workDirOption,
} from '../options/restore.js';
import { storageOption } from '../options/shared.js';
import { extensionInstaller } from '../postgres/extensions.js';
import { clientToolResolver } from '../postgres/install.js';
import { uploadReportArtifact } from '../report/artifact.js';
import { actionFrontDoor, inputs, optionalInput } from './inputs.js';
import { readAlertSettings, sendAlerts } from './alerting.js';
import { Inputs, Outputs } from './names.js';
import { actionLogger, maskSecretInputs } from './runtime.js';

/** State shared with the `post:` step of the same action. */
const State = {
  IsPost: 'isPost',
  Folders: 'temporaryFolders',
} as const;

/** The `post:` step: removes a scratch server and files a killed or cancelled main step left. */
async function runPostStep(logger: Logger): Promise<void> {
  let folders: string[];
  try {
    folders = JSON.parse(core.getState(State.Folders) || '[]') as string[];
  } catch {
    folders = [];
  }
  const removed = await removeLeftovers(folders, logger);
  if (removed.length === 0) logger.info('Nothing left behind to clean up.');
}

function setOutputs(result: DrillResult, reportPath: string): void {
  const phase = (name: string): string => {
    const s = result.phases.find((p) => p.name === name)?.seconds;
    return s === undefined ? '' : s.toFixed(1);
  };
  core.setOutput(Outputs.Status, result.status);
  core.setOutput(Outputs.BackupId, result.manifest.id);
  core.setOutput(
    Outputs.RtoSeconds,
    result.rtoSeconds === undefined ? '' : result.rtoSeconds.toFixed(1),
  );
  core.setOutput(Outputs.RpoSeconds, result.rpoSeconds.toFixed(0));
  core.setOutput(Outputs.DownloadSeconds, phase('download'));
  core.setOutput(Outputs.DecryptSeconds, phase('decrypt'));
  core.setOutput(Outputs.RestoreSeconds, phase('restore'));
  core.setOutput(Outputs.ChecksSeconds, phase('checks'));
  core.setOutput(Outputs.SmokeSeconds, phase('smoke'));
  core.setOutput(Outputs.ReportPath, reportPath);
}

/** Writes the report (Markdown and JSON) and uploads both as an artifact when asked to. */
async function writeReport(
  result: DrillResult,
  markdown: string,
  folder: string,
  artifact: string | undefined,
  logger: Logger,
): Promise<string> {
  await mkdir(folder, { recursive: true });
  const base = path.join(folder, `${result.mode}-${result.name}-${compactTime(result.startedAt)}`);
  const jsonPath = `${base}.json`;
  const { manifest, history, ...rest } = result;
  const json = {
    ...rest,
    backupId: manifest.id,
    backup: {
      kind: manifest.kind,
      startedAt: manifest.startedAt,
      finishedAt: manifest.finishedAt,
      sourceVersion: manifest.source.serverVersion,
    },
    previousDrills: history.length,
  };
  await writeFile(jsonPath, `${JSON.stringify(json, null, 2)}\n`);
  await writeFile(`${base}.md`, markdown);
  if (artifact) {
    await uploadReportArtifact({
      name: artifact,
      files: [jsonPath, `${base}.md`],
      rootDir: folder,
      env: process.env,
      logger,
    });
  }
  return jsonPath;
}

const DRILL_NEXT_STEP =
  'Read the drill report: fix the phase or check that failed (or the target it missed) and ' +
  'run the drill again with workflow_dispatch; a backup that does not restore needs a new backup.';

export async function runRestoreDrillAction(): Promise<void> {
  const logger = actionLogger;
  if (core.getState(State.IsPost) === 'true') return runPostStep(logger);
  core.saveState(State.IsPost, 'true');
  const env = process.env;
  maskSecretInputs(env);
  const alerts = readAlertSettings('restore-drill');
  const mode = inputs.choice(Inputs.Mode, MODES, 'drill');
  const subject: { name: string; storage?: Storage } = {
    name: optionalInput(Inputs.Name) ?? 'database',
  };
  let reported = false;
  // A real restore is watched by whoever started it: only drills alert.
  const alert: DrillAlert = async (outcome) => {
    reported = true;
    if (mode !== 'drill') return undefined;
    return sendAlerts(
      { action: 'restore-drill', name: subject.name, ...outcome },
      {
        settings: alerts,
        env,
        logger,
        storage: subject.storage,
        names: isCatalogName(subject.name) ? [subject.name] : [],
        title: `Restore drill failed: ${subject.name}`,
        warningTitle: `Restore drill warning: ${subject.name}`,
      },
    );
  };
  try {
    await drillOrRestore(mode, subject, alert);
  } catch (error) {
    if (!reported) {
      await alert({
        status: 'failed',
        message: errorMessage(error),
        warnings: [],
        nextStep: DRILL_NEXT_STEP,
      });
    }
    throw error;
  }
}

type DrillAlert = (
  outcome: Omit<JobOutcome, 'action' | 'name'>,
) => Promise<{ issueNumber?: number } | undefined>;

const MODES = ['drill', 'restore', 'extract', 'export'] as const;
type Mode = (typeof MODES)[number];

/** The work folder of this run, known to the post: step, and removed however the run ends. */
interface RunFolder {
  /** RUNNER_TEMP (or work-dir): the report goes there. */
  temp: string;
  workDir: string;
  onTemporaryFolder(dir: string): void;
  close(): void;
}

function openRunFolder(door: FrontDoor, logger: Logger): RunFolder {
  const temp = workDirOption(inputs, door);
  const workDir = mkdtempSync(path.join(temp, 'restore-drill-'));
  const folders: string[] = [workDir];
  core.saveState(State.Folders, JSON.stringify(folders));
  // A cancelled job stops this process with a signal: exit, so the scratch server's exit hook
  // and this one run; the post: step removes anything they could not.
  const removeWorkDir = (): void => rmSync(workDir, { recursive: true, force: true });
  process.on('exit', removeWorkDir);
  const onSignal = (signal: NodeJS.Signals): void => {
    logger.warning(`Received ${signal}: stopping, and removing the scratch server and files`);
    process.exit(1);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return {
    temp,
    workDir,
    onTemporaryFolder: (dir) => {
      folders.push(dir);
      core.saveState(State.Folders, JSON.stringify(folders));
    },
    close: () => {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      removeWorkDir();
    },
  };
}

function runDeps(
  storage: Storage,
  folder: RunFolder,
  postgresVersion: 'auto' | number,
  door: FrontDoor,
): DrillDeps {
  const logger = actionLogger;
  const { env } = door;
  return {
    storage,
    logger,
    clock: systemClock,
    env,
    zstdPath: findOnPath('zstd', env.PATH),
    resolveTools: clientToolResolver(postgresVersion, env, logger),
    installExtensions: extensionInstaller(env, logger),
    workDir: folder.workDir,
    workspace: door.workspace,
    onTemporaryFolder: folder.onTemporaryFolder,
  };
}

/** Runs the mode of the inputs; `alert` tells the outcome of a drill that ran. */
async function drillOrRestore(
  mode: Mode,
  subject: { name: string; storage?: Storage },
  alert: DrillAlert,
): Promise<void> {
  const door = actionFrontDoor(process.env);
  if (mode === 'extract' || mode === 'export') return extractOrExport(mode, subject, door);
  const job =
    mode === 'restore'
      ? ({ mode, options: restoreOptions(inputs, door) } as const)
      : ({ mode, options: drillOptions(inputs, door) } as const);
  const { options } = job;
  const artifact = optionalInput(Inputs.ReportArtifact);
  const storage = await storageOption(inputs, actionLogger);
  subject.storage = storage;
  const folder = openRunFolder(door, actionLogger);
  const deps = runDeps(storage, folder, options.postgresVersion, door);
  const name = await resolveName(storage, options.name);
  options.name = name;
  subject.name = name;
  let result: DrillResult;
  try {
    result =
      job.mode === 'restore'
        ? await runRestore(job.options, deps)
        : await runDrill(job.options, deps);
  } finally {
    folder.close();
  }
  await reportDrillResult(result, mode, folder.temp, artifact, alert);
}

/** The drill's (or restore's) summary, report, outputs and alert; a failure fails the step. */
async function reportDrillResult(
  result: DrillResult,
  mode: Mode,
  temp: string,
  artifact: string | undefined,
  alert: DrillAlert,
): Promise<void> {
  const name = result.name;
  const markdown = drillSummary(result);
  const reportPath = await writeReport(result, markdown, temp, artifact, actionLogger);
  setOutputs(result, reportPath);
  await core.summary.addRaw(markdown).write();
  const failures = [
    ...(result.error ? [result.error] : []),
    ...result.phases
      .filter(
        (p) => p.status === 'failed' && p.name !== 'checks' && !result.error?.includes(p.detail),
      )
      .map((p) => `${p.label}: ${p.detail}`),
    ...result.checks.filter((c) => c.status === 'failed').map((c) => `${c.name}: ${c.detail}`),
  ];
  const alerted = await alert({
    status: result.status,
    message:
      result.status === 'failed'
        ? failures.join('; ')
        : `Backup ${result.manifest.id} restored` +
          (result.rtoSeconds === undefined ? '' : ` in ${result.rtoSeconds.toFixed(0)} s`) +
          '.',
    details: markdown,
    backupId: result.manifest.id,
    warnings: [],
    nextStep: DRILL_NEXT_STEP,
  });
  if (alerted?.issueNumber !== undefined) {
    core.setOutput(Outputs.IssueNumber, String(alerted.issueNumber));
  }
  if (result.status === 'failed') {
    core.setOutput(Outputs.Failures, failures.join('\n'));
    const what =
      mode !== 'restore'
        ? `Restore drill of ${name} failed`
        : result.targetState === 'restored'
          ? `Restore of ${name} completed, and checks after it failed`
          : `Restore of ${name} failed`;
    throw new Error(
      `${what}:\n${failures.map((f) => `- ${f}`).join('\n')}` +
        (result.targetStateText ? `\n${result.targetStateText}` : ''),
    );
  }
}

/**
 * Modes extract and export: tables of a backup into a side schema of target-url (compared
 * with the live ones), or into files next to the backup in the catalog.
 */
async function extractOrExport(
  mode: 'extract' | 'export',
  subject: { name: string; storage?: Storage },
  door: FrontDoor,
): Promise<void> {
  const read = (key: string): string | undefined => inputs.string(key);
  const decryption = decryptionOption(inputs);
  const options =
    mode === 'extract' ? readExtractOptions(read, decryption) : readExportOptions(read, decryption);
  const artifact = optionalInput(Inputs.ReportArtifact);
  const storage = await storageOption(inputs, actionLogger);
  subject.storage = storage;
  const folder = openRunFolder(door, actionLogger);
  const deps = runDeps(storage, folder, options.postgresVersion, door);
  const { env } = door;
  const reportDir = path.join(folder.temp, `${mode}-${compactTime(systemClock.now())}`);
  let markdown: string;
  try {
    if ('targetUrl' in options) {
      const result = await runExtract(options, { ...deps, reportDir });
      subject.name = result.name;
      core.setOutput(Outputs.BackupId, result.manifest.id);
      core.setOutput(Outputs.ExtractSchema, result.schema);
      markdown = extractSummary(result);
    } else {
      const result = await runExport(options, { ...deps, destination: { storage } });
      subject.name = result.exportManifest.name;
      core.setOutput(Outputs.BackupId, result.manifest.id);
      core.setOutput(Outputs.ExportManifest, result.location);
      markdown = exportSummary(result);
    }
  } finally {
    folder.close();
  }
  core.setOutput(Outputs.Status, 'passed');
  await mkdir(reportDir, { recursive: true });
  const summaryFile = path.join(reportDir, 'summary.md');
  await writeFile(summaryFile, markdown);
  core.setOutput(Outputs.ReportPath, summaryFile);
  if (artifact) {
    const files = (await readdir(reportDir)).map((f) => path.join(reportDir, f));
    await uploadReportArtifact({
      name: artifact,
      files,
      rootDir: reportDir,
      env,
      logger: actionLogger,
    });
  }
  await core.summary.addRaw(markdown).write();
}
