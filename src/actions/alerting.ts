import * as core from '@actions/core';
import { errorMessage } from '../core/errors.js';
import { systemClock, type Logger } from '../core/logger.js';
import type { Storage } from '../storage/storage.js';
import {
  reportOutcome,
  type AlertDeps,
  type AlertResult,
  type IssueTarget,
  type JobOutcome,
} from '../report/alerts.js';
import { GitHubApi, runUrl, type GitHubContext } from '../report/github.js';
import {
  fetchPoster,
  parseNotifyOn,
  parseNotifyTargets,
  type NotifyOn,
  type NotifyTarget,
} from '../report/notify.js';
import { inputs, optionalInput } from './inputs.js';
import { Inputs } from './names.js';

/** The alert inputs every action shares, read and masked before anything else runs. */
export interface AlertSettings {
  token?: string;
  /** Report to an issue (needs `token`). */
  issue: boolean;
  labels: string[];
  targets: NotifyTarget[];
  notifyOn: NotifyOn;
}

/**
 * Reads `github-token`, `issue`, `issue-labels`, `notify` and `notify-on`. The token and every
 * notify URL (with its path, the secret part of a Slack webhook) are masked before they are
 * checked, so no later log line, error or summary can show them.
 */
export function readAlertSettings(defaultLabel: string): AlertSettings {
  const token = optionalInput(Inputs.GithubToken);
  if (token) core.setSecret(token);
  const lines = (optionalInput(Inputs.Notify) ?? '')
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  for (const line of lines) {
    core.setSecret(line);
    try {
      const { pathname, search } = new URL(line);
      if (pathname.length > 1) core.setSecret(pathname);
      if (search.length > 1) core.setSecret(search);
    } catch {
      // parseNotifyTargets says which entry is not a URL.
    }
  }
  const labels = inputs.list(Inputs.IssueLabels);
  return {
    token,
    issue: inputs.boolean(Inputs.Issue, true),
    labels: labels.length > 0 ? labels : [defaultLabel],
    targets: parseNotifyTargets(lines, Inputs.Notify),
    notifyOn: parseNotifyOn(optionalInput(Inputs.NotifyOn), Inputs.NotifyOn),
  };
}

export interface AlertRequest {
  settings: AlertSettings;
  env: NodeJS.ProcessEnv;
  logger: Logger;
  /** The catalog where run records go; absent when the storage could not be opened. */
  storage?: Storage;
  /** The catalog names the run records go under (empty: none known). */
  names: string[];
  title: string;
  warningTitle: string;
}

/** The run's context from the runner's environment. */
function githubContext(env: NodeJS.ProcessEnv, token: string): GitHubContext {
  return {
    token,
    repository: env.GITHUB_REPOSITORY ?? '',
    apiUrl: env.GITHUB_API_URL ?? 'https://api.github.com',
    serverUrl: env.GITHUB_SERVER_URL ?? 'https://github.com',
    runId: env.GITHUB_RUN_ID,
    runAttempt: env.GITHUB_RUN_ATTEMPT,
    workflow: env.GITHUB_WORKFLOW,
  };
}

/**
 * Sends the alerts of a run's outcome: issue, notifications, run record. Never throws and never
 * changes the step's result; problems are warnings.
 */
export async function sendAlerts(
  outcome: JobOutcome,
  r: AlertRequest,
): Promise<AlertResult | undefined> {
  const { settings, env, logger } = r;
  const issue = Boolean(settings.token) && settings.issue;
  // Without an issue or a notify URL nobody listens, and the catalog gets no run records.
  if (!issue && settings.targets.length === 0) return undefined;
  try {
    const context = githubContext(env, settings.token ?? '');
    let issues: IssueTarget | undefined;
    if (issue) {
      if (!context.repository) {
        logger.warning('GITHUB_REPOSITORY is not set, so no issue can be reported.');
      } else {
        issues = {
          api: new GitHubApi(context, logger),
          labels: settings.labels,
          title: r.title,
          warningTitle: r.warningTitle,
        };
      }
    }
    const deps: AlertDeps = {
      logger,
      clock: systemClock,
      history: r.storage && r.names.length > 0 ? { storage: r.storage, names: r.names } : undefined,
      issues,
      notify:
        settings.targets.length > 0
          ? { targets: settings.targets, on: settings.notifyOn, post: fetchPoster }
          : undefined,
      runUrl: runUrl(context),
      repository: context.repository || undefined,
    };
    return await logger.group('Alerts', () => reportOutcome(outcome, deps));
  } catch (error) {
    logger.warning(`Could not send the alerts of this run: ${errorMessage(error)}`);
    return undefined;
  }
}
