import * as core from '@actions/core';
import { ConfigurationError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { GitHubApi, GitHubPermissionError } from '../report/github.js';
import { reportFailure, reportSuccess } from '../report/issues.js';
import { booleanInput, listInput, optionalInput } from './inputs.js';
import { Inputs } from './names.js';

export interface IssueReportRequest {
  env: NodeJS.ProcessEnv;
  logger: Logger;
  /** Stable id of what is watched: `verify:<name>`, `drill:<name>`, `backup:<name>`. */
  marker: string;
  title: string;
  defaultLabel: string;
  failed: boolean;
  body: string;
}

/**
 * Opens, comments on or closes the issue for a watched job, when `github-token` is given and
 * `issue` is not false. Reporting never changes the step's result: a missing `issues: write`
 * permission is a warning that names the permission to add.
 */
export async function reportToIssue(r: IssueReportRequest): Promise<number | undefined> {
  const token = optionalInput(Inputs.GithubToken);
  if (!token) return undefined;
  core.setSecret(token);
  if (!booleanInput(Inputs.Issue, true)) return undefined;
  const repository = r.env.GITHUB_REPOSITORY;
  if (!repository) {
    r.logger.warning('GITHUB_REPOSITORY is not set, so no issue can be reported.');
    return undefined;
  }
  const labels = listInput(Inputs.IssueLabels);
  const api = new GitHubApi(
    {
      token,
      repository,
      apiUrl: r.env.GITHUB_API_URL ?? 'https://api.github.com',
      serverUrl: r.env.GITHUB_SERVER_URL ?? 'https://github.com',
      runId: r.env.GITHUB_RUN_ID,
      runAttempt: r.env.GITHUB_RUN_ATTEMPT,
      workflow: r.env.GITHUB_WORKFLOW,
    },
    r.logger,
  );
  const lifecycle = {
    api,
    labels: labels.length > 0 ? labels : [r.defaultLabel],
    marker: r.marker,
    title: r.title,
    logger: r.logger,
  };
  try {
    if (r.failed) return (await reportFailure(lifecycle, r.body)).issueNumber;
    return (await reportSuccess(lifecycle, r.body)).issueNumber;
  } catch (error) {
    if (error instanceof GitHubPermissionError || error instanceof ConfigurationError) {
      r.logger.warning(errorMessage(error));
    } else {
      r.logger.warning(`Could not update the GitHub issue: ${errorMessage(error)}`);
    }
    return undefined;
  }
}
