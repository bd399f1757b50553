import type { Logger } from '../core/logger.js';
import type { GitHubApi, GitHubIssue } from './github.js';

/** What one watched thing (a database's verification, drill or backup) reports to. */
export interface IssueLifecycle {
  api: GitHubApi;
  /** Labels put on the issue; the first one is used to find it again. */
  labels: string[];
  /**
   * A stable id of what is watched, e.g. `verify:prod-db`. It is embedded in the issue body as
   * `<!-- pg-backup-actions:marker=... -->` and is what finds the issue; the title is not.
   */
  marker: string;
  title: string;
  logger: Logger;
}

/** The HTML comment that marks an issue as belonging to `marker`. */
export function markerComment(marker: string): string {
  if (marker === '' || /-->|--!>|[\r\n]/.test(marker)) {
    throw new Error(
      `The issue marker ${JSON.stringify(marker)} cannot sit inside an HTML comment.`,
    );
  }
  return `<!-- pg-backup-actions:marker=${marker} -->`;
}

/** Opens an issue for a failure, or comments on the one already open for the same marker. */
export async function reportFailure(
  l: IssueLifecycle,
  body: string,
): Promise<{ issueNumber: number; issueUrl: string; action: 'opened' | 'commented' }> {
  const tag = markerComment(l.marker);
  const text = withRunLink(l, body);
  const open = await findOpen(l, tag);
  if (open.length > 0) {
    const kept = await collapseDuplicates(l, open);
    await l.api.createComment(kept.number, text);
    l.logger.info(`Commented on issue #${kept.number}: ${kept.html_url}`);
    return { issueNumber: kept.number, issueUrl: kept.html_url, action: 'commented' };
  }

  for (const label of l.labels) await l.api.ensureLabel(label);
  const created = await l.api.createIssue({
    title: l.title,
    body: `${text}\n\n${tag}`,
    labels: l.labels,
  });
  l.logger.info(`Opened issue #${created.number}: ${created.html_url}`);

  // Another run may have opened an issue for the same marker at the same time.
  const after = await findOpen(l, tag);
  if (!after.some((issue) => issue.number === created.number)) after.push(created);
  const kept = await collapseDuplicates(l, after);
  if (kept.number === created.number) {
    return { issueNumber: created.number, issueUrl: created.html_url, action: 'opened' };
  }
  await l.api.createComment(kept.number, text);
  l.logger.info(`Issue #${kept.number} was opened first; commented there instead.`);
  return { issueNumber: kept.number, issueUrl: kept.html_url, action: 'commented' };
}

/** Comments `body` ("passed again") on the open issue for the marker and closes it, if any. */
export async function reportSuccess(
  l: IssueLifecycle,
  body: string,
): Promise<{ issueNumber?: number; issueUrl?: string; action: 'closed' | 'none' }> {
  const open = await findOpen(l, markerComment(l.marker));
  if (open.length === 0) {
    l.logger.debug(`No open issue for ${l.marker}.`);
    return { action: 'none' };
  }
  const text = withRunLink(l, body);
  for (const issue of open) {
    await l.api.createComment(issue.number, text);
    await l.api.closeIssue(issue.number, 'completed');
    l.logger.info(`Closed issue #${issue.number}: ${issue.html_url}`);
  }
  return { issueNumber: open[0]!.number, issueUrl: open[0]!.html_url, action: 'closed' };
}

/** Open issues with the first label whose body carries the marker, lowest number first. */
async function findOpen(l: IssueLifecycle, tag: string): Promise<GitHubIssue[]> {
  const listed = await l.api.listOpenIssues(l.labels.slice(0, 1));
  return listed
    .filter((issue) => typeof issue.body === 'string' && issue.body.includes(tag))
    .sort((a, b) => a.number - b.number);
}

/** Keeps the lowest-numbered issue and closes the others as its duplicates. */
async function collapseDuplicates(l: IssueLifecycle, issues: GitHubIssue[]): Promise<GitHubIssue> {
  const [kept, ...rest] = [...issues].sort((a, b) => a.number - b.number);
  for (const duplicate of rest) {
    await l.api.createComment(
      duplicate.number,
      `Duplicate of #${kept!.number}, which tracks the same failure; closing this one.`,
    );
    await l.api.closeIssue(duplicate.number, 'duplicate', kept);
    l.logger.info(`Closed issue #${duplicate.number} as a duplicate of #${kept!.number}.`);
  }
  return kept!;
}

function withRunLink(l: IssueLifecycle, body: string): string {
  const link = l.api.runUrl();
  return link && !body.includes(link) ? `${body}\n\nRun: ${link}` : body;
}
