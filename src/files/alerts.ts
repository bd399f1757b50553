/**
 * How the alerts name the file jobs: backup, verify, drill and prune each have an action of their
 * own, with its issue title, default label and next step. A restore has none, as the database's
 * real restore: whoever started it watches it.
 */
import type { ActionName } from '../catalog/runs.js';
import type { JobOutcome } from '../report/alerts.js';
import type { FilesMode } from './options.js';

export type FilesAction = Extract<ActionName, `files-${string}`>;
export type AlertedMode = Exclude<FilesMode, 'restore'>;

export const FILES_ACTIONS: Record<AlertedMode, FilesAction> = {
  backup: 'files-backup',
  verify: 'files-verify',
  drill: 'files-drill',
  prune: 'files-prune',
};

export interface FilesAlertNames {
  /** The start of the issue titles: `<what> failed: <name>`, `<what> warning: <name>`. */
  what: string;
  /** The issue label when `issue-labels` is not given. */
  label: string;
  /** What to do next, for the issue and the failure message. */
  nextStep: string;
}

export const FILES_ALERTS: Record<FilesAction, FilesAlertNames> = {
  'files-backup': {
    what: 'File backup',
    label: 'file-backup-failure',
    nextStep:
      'Fix the cause above (a source that cannot be read: the source location and the ' +
      'files-s3-* credentials; a refused upload: the storage credentials and bucket policy) and ' +
      're-run the workflow. Until a file backup succeeds, the newest file backup in the catalog ' +
      'is the last good one.',
  },
  'files-verify': {
    what: 'File backup verification',
    label: 'file-backup-verification',
    nextStep:
      "Open the run's summary: fix what a check names, or take a new file backup if this one cannot be restored.",
  },
  'files-drill': {
    what: 'File restore drill',
    label: 'file-backup-verification',
    nextStep:
      "Open the run's summary: a failed restore needs a new file backup; a missed RTO or RPO target needs a faster store or more frequent file backups.",
  },
  'files-prune': {
    what: 'File prune',
    label: 'file-backup-prune',
    nextStep:
      'Read the reason above. A refusal by max-delete deletes nothing: the policy would delete ' +
      'more than allowed (check the policy and the catalog, then raise max-delete for one run if ' +
      'it is right). Objects the store would not delete (Object Lock) stay until their retention ' +
      'ends. Fix the cause and re-run the workflow.',
  },
};

/** The action of a `mode` as given (default backup); undefined for restore and for no mode. */
export function filesActionOf(mode: string | undefined): FilesAction | undefined {
  const given = mode ?? 'backup';
  return Object.hasOwn(FILES_ACTIONS, given) ? FILES_ACTIONS[given as AlertedMode] : undefined;
}

/** A file job's outcome as the alerts take it: the action's next step, and no warnings. */
export function filesOutcome(
  action: FilesAction,
  name: string,
  outcome: Omit<JobOutcome, 'action' | 'name' | 'warnings' | 'nextStep'>,
): JobOutcome & { action: FilesAction } {
  return { action, name, warnings: [], nextStep: FILES_ALERTS[action].nextStep, ...outcome };
}
