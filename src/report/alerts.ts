import { errorMessage } from '../core/errors.js';
import type { Clock, Logger } from '../core/logger.js';
import {
  appendRunRecord,
  failingStreak,
  recentRuns,
  RUN_RECORD_SCHEMA_VERSION,
  type ActionName,
  type FailingStreak,
  type RunRecord,
} from '../catalog/runs.js';
import type { Storage } from '../storage/storage.js';
import { GitHubPermissionError, type GitHubApi } from './github.js';
import { reportFailure, reportSuccess, type IssueLifecycle } from './issues.js';
import {
  notifyAll,
  wantsEvent,
  type AlertEvent,
  type DeliveryPolicy,
  type HttpPoster,
  type Notification,
  type NotifyOn,
  type NotifyTarget,
} from './notify.js';

/** How one run of an action ended, as alerts tell it. */
export interface JobOutcome {
  action: ActionName;
  /** The catalog name (several, comma-separated, for a prune of several names). */
  name: string;
  status: 'passed' | 'failed';
  /** One paragraph: what failed this time, or what was done. Free of secrets. */
  message: string;
  /** Markdown for the issue: the run's report, when there is one. */
  details?: string;
  backupId?: string;
  /** Warnings worth an alert (a size change over the threshold, a stale backup). */
  warnings: string[];
  /** What to do next, for the issue and the failure message. */
  nextStep?: string;
}

/** Where the issues of an action go. */
export interface IssueTarget {
  api: GitHubApi;
  /** The first one finds the issue again. */
  labels: string[];
  /** Issue title of a failure, e.g. `Backup failed: prod`. */
  title: string;
  /** Issue title of a warning. */
  warningTitle: string;
}

export interface AlertDeps {
  logger: Logger;
  clock: Clock;
  /** Where run records are read and appended; each name of the outcome gets one. */
  history?: { storage: Storage; names: string[] };
  issues?: IssueTarget;
  notify?: {
    targets: NotifyTarget[];
    on: NotifyOn;
    post: HttpPoster;
    policy?: DeliveryPolicy;
  };
  runUrl?: string;
  repository?: string;
}

export interface AlertResult {
  event: AlertEvent;
  /** The failure (or warning) issue opened, commented on or closed. */
  issueNumber?: number;
  /** Failed runs in a row, this one included (failures) or just ended (recoveries). */
  failedRuns: number;
}

/** Marker prefixes of issues, kept from the first releases so open issues are found again. */
const MARKER_PREFIX: Record<ActionName, string> = {
  backup: 'backup',
  verify: 'verify',
  'restore-drill': 'drill',
  prune: 'prune',
  'files-backup': 'files-backup',
  'files-verify': 'files-verify',
  'files-drill': 'files-drill',
  'files-prune': 'files-prune',
};

const WARNING_LABEL = 'warning';

/**
 * Tells what a run's outcome means to the people watching: a failure opens the issue of the
 * action and name (or comments on the open one) and notifies; the first success after failures
 * comments "recovered", closes the issue and notifies a recovery, known from the run records in
 * the catalog even without an issue; warnings go to a warning issue of their own. Nothing here
 * throws: an alert that cannot be delivered is a warning, and the step keeps its own result.
 */
export async function reportOutcome(outcome: JobOutcome, deps: AlertDeps): Promise<AlertResult> {
  const { logger } = deps;
  const now = deps.clock.now().toISOString();
  const previous = await previousStreak(outcome, deps);
  const failed = outcome.status === 'failed';
  const streak: FailingStreak = failed
    ? { runs: previous.runs + 1, since: previous.since ?? now }
    : previous;
  await appendRecords(outcome, deps, now);

  let issueNumber: number | undefined;
  let issueUrl: string | undefined;
  let closedIssue = false;
  if (deps.issues) {
    const tracked = await trackIssue(outcome, deps.issues, streak, now, logger);
    issueNumber = tracked?.issueNumber;
    issueUrl = tracked?.issueUrl;
    closedIssue = tracked?.closed ?? false;
  }

  const recovered = !failed && (previous.runs > 0 || closedIssue);
  const event: AlertEvent = failed
    ? 'failure'
    : recovered
      ? 'recovery'
      : outcome.warnings.length > 0
        ? 'warning'
        : 'success';
  const result: AlertResult = { event, issueNumber, failedRuns: streak.runs };
  if (!deps.notify || deps.notify.targets.length === 0) return result;

  const notifications: Notification[] = [];
  const base = {
    action: outcome.action,
    name: outcome.name,
    ...(outcome.backupId ? { backupId: outcome.backupId } : {}),
    ...(deps.runUrl ? { runUrl: deps.runUrl } : {}),
    ...(deps.repository ? { repository: deps.repository } : {}),
    time: now,
  };
  if (event === 'failure') {
    notifications.push({
      ...base,
      event,
      message: failureText(outcome, streak),
      ...(streak.since ? { failingSince: streak.since } : {}),
      failedRuns: streak.runs,
      ...(issueUrl ? { issueUrl } : {}),
    });
  } else {
    notifications.push({
      ...base,
      event,
      message:
        event === 'recovery'
          ? recoveryText(outcome, previous)
          : event === 'warning'
            ? outcome.warnings.join('\n')
            : outcome.message,
      ...(event === 'recovery' && previous.since ? { failingSince: previous.since } : {}),
      ...(event === 'recovery' && previous.runs > 0 ? { failedRuns: previous.runs } : {}),
      ...(event === 'recovery' && issueUrl ? { issueUrl } : {}),
    });
    // A recovery that also warns sends the warning as its own message.
    if (event === 'recovery' && outcome.warnings.length > 0) {
      notifications.push({ ...base, event: 'warning', message: outcome.warnings.join('\n') });
    }
  }
  for (const notification of notifications) {
    if (!wantsEvent(deps.notify.on, notification.event)) continue;
    await notifyAll(deps.notify.targets, notification, {
      post: deps.notify.post,
      logger,
      policy: deps.notify.policy,
    });
  }
  return result;
}

/** The failing streak before this run, from the run records; none when they cannot be read. */
async function previousStreak(outcome: JobOutcome, deps: AlertDeps): Promise<FailingStreak> {
  if (!deps.history) return { runs: 0 };
  let newest: FailingStreak = { runs: 0 };
  let newestTime = '';
  for (const name of deps.history.names) {
    try {
      const records = await recentRuns(deps.history.storage, name, outcome.action);
      const head = records[0];
      if (head && head.time > newestTime) {
        newestTime = head.time;
        newest = failingStreak(records);
      }
    } catch (error) {
      deps.logger.debug(`Could not read the run records of ${name}: ${errorMessage(error)}`);
    }
  }
  return newest;
}

async function appendRecords(outcome: JobOutcome, deps: AlertDeps, now: string): Promise<void> {
  if (!deps.history) return;
  for (const name of deps.history.names) {
    const record: RunRecord = {
      schemaVersion: RUN_RECORD_SCHEMA_VERSION,
      action: outcome.action,
      name,
      status: outcome.status,
      time: now,
      message: firstLines(outcome.message, 20),
      ...(outcome.backupId ? { backupId: outcome.backupId } : {}),
      ...(deps.runUrl ? { runUrl: deps.runUrl } : {}),
    };
    try {
      await appendRunRecord(deps.history.storage, record);
    } catch (error) {
      deps.logger.warning(
        `Could not record this run's outcome in the catalog (${errorMessage(error)}); ` +
          'the next run cannot tell from the catalog that this one ' +
          (outcome.status === 'failed' ? 'failed.' : 'passed.'),
      );
    }
  }
}

/** Opens, comments on or closes the failure issue, and the warning issue. */
async function trackIssue(
  outcome: JobOutcome,
  target: IssueTarget,
  streak: FailingStreak,
  now: string,
  logger: Logger,
): Promise<{ issueNumber?: number; issueUrl?: string; closed: boolean } | undefined> {
  const marker = `${MARKER_PREFIX[outcome.action]}:${outcome.name}`;
  const failures: IssueLifecycle = {
    api: target.api,
    labels: target.labels,
    marker,
    title: target.title,
    logger,
  };
  const warnings: IssueLifecycle = {
    api: target.api,
    labels: [...target.labels, WARNING_LABEL],
    marker: `${marker}:warning`,
    title: target.warningTitle,
    logger,
  };
  try {
    if (outcome.status === 'failed') {
      const opened = await reportFailure(failures, failureIssueBody(outcome, streak, now));
      return { issueNumber: opened.issueNumber, issueUrl: opened.issueUrl, closed: false };
    }
    const closed = await reportSuccess(failures, recoveryIssueBody(outcome));
    let warned: { issueNumber?: number; issueUrl?: string } = {};
    if (outcome.warnings.length > 0) {
      const body = [
        `**Warning** from ${outcome.action} of \`${outcome.name}\` (the run passed):`,
        '',
        ...outcome.warnings.map((w) => `- ${w}`),
      ].join('\n');
      const opened = await reportFailure(warnings, body);
      warned = { issueNumber: opened.issueNumber, issueUrl: opened.issueUrl };
    } else {
      await reportSuccess(
        warnings,
        `The last ${outcome.action} of \`${outcome.name}\` raised no warning; closing.`,
      );
    }
    return closed.action === 'closed'
      ? { issueNumber: closed.issueNumber, issueUrl: closed.issueUrl, closed: true }
      : { ...warned, closed: false };
  } catch (error) {
    logger.warning(
      error instanceof GitHubPermissionError
        ? errorMessage(error)
        : `Could not update the GitHub issue: ${errorMessage(error)}`,
    );
    return undefined;
  }
}

const WHAT: Record<ActionName, string> = {
  backup: 'The backup',
  verify: 'The backup verification',
  'restore-drill': 'The restore drill',
  prune: 'The prune',
  'files-backup': 'The file backup',
  'files-verify': 'The file backup verification',
  'files-drill': 'The file restore drill',
  'files-prune': 'The file prune',
};

function streakLine(streak: FailingStreak): string {
  if (streak.runs <= 1) return 'This is the first failed run.';
  return `Failing since ${streak.since ?? 'an earlier run'}: ${streak.runs} runs in a row.`;
}

function failureText(outcome: JobOutcome, streak: FailingStreak): string {
  return [
    `${WHAT[outcome.action]} of ${outcome.name} failed: ${outcome.message}`,
    streakLine(streak),
    ...(outcome.nextStep ? [`Next step: ${outcome.nextStep}`] : []),
  ].join('\n');
}

function recoveryText(outcome: JobOutcome, previous: FailingStreak): string {
  const after =
    previous.runs > 0
      ? ` after ${previous.runs} failed run${previous.runs === 1 ? '' : 's'}` +
        (previous.since ? ` since ${previous.since}` : '')
      : '';
  return `${WHAT[outcome.action]} of ${outcome.name} recovered${after}: ${outcome.message}`;
}

/** The issue body (or comment) of a failure: what, since when, how many, next step, details. */
export function failureIssueBody(outcome: JobOutcome, streak: FailingStreak, now: string): string {
  return [
    `${WHAT[outcome.action]} of \`${outcome.name}\` failed at ${now}.`,
    '',
    `**What failed:** ${outcome.message}`,
    '',
    `**Since:** ${streakLine(streak)}`,
    ...(outcome.nextStep ? ['', `**Next step:** ${outcome.nextStep}`] : []),
    ...(outcome.details
      ? ['', '<details><summary>Report</summary>', '', outcome.details, '', '</details>']
      : []),
  ].join('\n');
}

/** The comment that closes the issue: recovered, with what passed. */
function recoveryIssueBody(outcome: JobOutcome): string {
  return [
    `Recovered: ${WHAT[outcome.action].toLowerCase()} of \`${outcome.name}\` passed again. ${outcome.message}`,
    ...(outcome.details ? ['', outcome.details] : []),
  ].join('\n');
}

function firstLines(text: string, lines: number): string {
  const all = text.split('\n');
  return all.length > lines ? `${all.slice(0, lines).join('\n')}\n…` : text;
}
