import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ACTION_NAMES } from '../../src/catalog/runs.js';
import { FILES_ACTIONS, FILES_ALERTS, filesActionOf } from '../../src/files/alerts.js';
import { FILES_MODES } from '../../src/files/options.js';
import { repoRoot } from '../support/bundle.js';
import { notificationValidator } from '../support/notification-schema.js';

describe('alerts of the file jobs', () => {
  it('names the action of every mode but restore, backup when no mode is given', () => {
    expect(FILES_MODES.map((mode) => filesActionOf(mode))).toEqual([
      'files-backup',
      undefined,
      'files-verify',
      'files-drill',
      'files-prune',
    ]);
    expect(filesActionOf(undefined)).toBe('files-backup');
    expect(filesActionOf('Backup')).toBeUndefined();
    expect(filesActionOf('toString')).toBeUndefined();
  });

  it('gives each action its own title; backup and prune their own label', () => {
    const alerts = Object.values(FILES_ACTIONS).map((action) => FILES_ALERTS[action]);
    expect(new Set(alerts.map((a) => a.what)).size).toBe(alerts.length);
    expect(FILES_ALERTS['files-backup']).toMatchObject({
      what: 'File backup',
      label: 'file-backup-failure',
    });
    expect(FILES_ALERTS['files-prune']).toMatchObject({
      what: 'File prune',
      label: 'file-backup-prune',
    });
    for (const a of alerts) expect(a.nextStep.length).toBeGreaterThan(40);
  });

  it('the notification schema lists every action, and takes a file prune failure', () => {
    const schema = JSON.parse(
      readFileSync(path.join(repoRoot, 'docs/notification.schema.json'), 'utf8'),
    ) as { properties: { action: { enum: string[] } } };
    expect(schema.properties.action.enum).toEqual([...ACTION_NAMES]);
    expect(
      notificationValidator()({
        event: 'failure',
        action: 'files-prune',
        name: 'uploads',
        message: 'The file prune of uploads failed: Prune refused, nothing was deleted.',
        time: '2026-12-02T02:17:04.981Z',
        failedRuns: 1,
      }),
    ).toBe(true);
  });
});
