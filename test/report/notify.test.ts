import { ConfigurationError } from '../../src/core/errors.js';
import { MemoryLogger } from '../../src/core/logger.js';
import {
  DEFAULT_DELIVERY,
  deliver,
  fetchPoster,
  notifyAll,
  parseNotifyOn,
  parseNotifyTargets,
  slackMessage,
  wantsEvent,
  type HttpPoster,
  type Notification,
  type NotifyTarget,
} from '../../src/report/notify.js';
import { notificationValidator } from '../support/notification-schema.js';
import { startReceiver, type Receiver } from '../support/receiver.js';

const SECRET_PATH = '/hooks/T0SECRET/B0SECRET/s3cr3tWebhookToken';
const SLACK = `https://hooks.slack.com/services/T0SECRET/B0SECRET/s3cr3tSlackToken`;

const notification: Notification = {
  event: 'failure',
  action: 'backup',
  name: 'shop',
  message: 'The backup of shop failed: password authentication failed for user "app"',
  runUrl: 'https://github.com/octo-org/octo-repo/actions/runs/42',
  repository: 'octo-org/octo-repo',
  time: '2026-12-02T02:17:00.000Z',
  failingSince: '2026-12-01T02:17:00.000Z',
  failedRuns: 2,
};

/** Short waits, so the retry tests take milliseconds. */
const quick = { attempts: 5, firstDelayMs: 20, attemptTimeoutMs: 500, totalMs: 3000 };

describe('notifications to a local receiver', () => {
  let receiver: Receiver;
  let logger: MemoryLogger;
  let target: NotifyTarget;

  beforeEach(async () => {
    receiver = await startReceiver();
    logger = new MemoryLogger();
    [target] = parseNotifyTargets([`${receiver.url}${SECRET_PATH}`], 'notify');
  });

  afterEach(async () => {
    await receiver.stop();
    for (const line of logger.lines) {
      expect(line).not.toContain(receiver.url);
      expect(line).not.toContain('s3cr3t');
    }
  });

  it('POSTs the JSON payload the schema documents', async () => {
    expect(await deliver(target, notification, { post: fetchPoster, logger, policy: quick })).toBe(
      true,
    );
    expect(receiver.received).toHaveLength(1);
    const [got] = receiver.received;
    expect(got!.path).toBe(SECRET_PATH);
    expect(got!.headers['content-type']).toBe('application/json');
    expect(got!.body).toEqual(notification);
    expect(notificationValidator()(got!.body)).toBe(true);
    expect(logger.lines).toContain('Sent the failure notification to webhook #1.');
  });

  it('delivers once when the receiver answers 500 three times and then 200', async () => {
    receiver.answer(500, 500, 500, 200);
    const started = Date.now();
    const result = await notifyAll([target], notification, {
      post: fetchPoster,
      logger,
      policy: quick,
    });
    expect(result).toEqual({ delivered: 1, failed: 0 });
    expect(receiver.received.map((r) => r.status)).toEqual([500, 500, 500, 200]);
    expect(receiver.accepted()).toHaveLength(1);
    // Waits double: 20, 40, 80 ms.
    const gaps = receiver.received.slice(1).map((r, i) => r.at - receiver.received[i]!.at);
    expect(gaps[2]!).toBeGreaterThanOrEqual(gaps[0]!);
    expect(Date.now() - started).toBeLessThan(quick.totalMs);
    expect(logger.lines.some((l) => l.startsWith('warning:'))).toBe(false);
  });

  it('gives up on a 4xx answer at once, with a warning that does not show the URL', async () => {
    receiver.answer(404);
    const ok = await deliver(target, notification, { post: fetchPoster, logger, policy: quick });
    expect(ok).toBe(false);
    expect(receiver.received).toHaveLength(1);
    expect(logger.lines).toContain(
      "warning: Could not deliver the failure notification to webhook #1 (answered 404); the step's result does not change.",
    );
  });

  it('honours Retry-After-less 429 and 408 as retryable', async () => {
    receiver.answer(429, 408, 204);
    expect(await deliver(target, notification, { post: fetchPoster, logger, policy: quick })).toBe(
      true,
    );
    expect(receiver.received.map((r) => r.status)).toEqual([429, 408, 204]);
  });

  it('stops within the bound when the receiver never answers', async () => {
    receiver.fallback = 'hang';
    const policy = { attempts: 5, firstDelayMs: 100, attemptTimeoutMs: 400, totalMs: 1200 };
    const started = Date.now();
    const ok = await deliver(target, notification, { post: fetchPoster, logger, policy });
    const elapsed = Date.now() - started;
    expect(ok).toBe(false);
    expect(elapsed).toBeLessThanOrEqual(policy.totalMs + 100);
    expect(receiver.received.length).toBeGreaterThanOrEqual(2);
    expect(logger.lines.at(-1)).toMatch(/^warning: Could not deliver .*gave no answer within/);
  });

  it('holds the step for at most the documented 30 s with the default policy', async () => {
    expect(DEFAULT_DELIVERY.totalMs).toBe(30_000);
    receiver.fallback = 'hang';
    const started = Date.now();
    const result = await notifyAll([target, target], notification, { post: fetchPoster, logger });
    const elapsed = Date.now() - started;
    expect(result).toEqual({ delivered: 0, failed: 2 });
    expect(elapsed).toBeLessThanOrEqual(DEFAULT_DELIVERY.totalMs + 500);
    expect(elapsed).toBeGreaterThanOrEqual(DEFAULT_DELIVERY.attemptTimeoutMs);
  }, 45_000);

  it('sends a Slack message with status, name, what failed and the run link', async () => {
    const [slack] = parseNotifyTargets([SLACK], 'notify');
    expect(slack!.kind).toBe('slack');
    expect(slack!.label).toBe('Slack #1');
    // hooks.slack.com cannot be reached from a test: the same poster, pointed at the receiver.
    const post: HttpPoster = (url, body, signal) =>
      fetchPoster(url.replace('https://hooks.slack.com', receiver.url), body, signal);
    expect(await deliver(slack!, notification, { post, logger, policy: quick })).toBe(true);
    const [got] = receiver.received;
    expect(got!.path).toBe('/services/T0SECRET/B0SECRET/s3cr3tSlackToken');
    const body = got!.body as ReturnType<typeof slackMessage>;
    expect(body.text).toBe(':red_circle: backup failed: shop');
    const text = JSON.stringify(body.blocks);
    expect(text).toContain('*Status:* failed');
    expect(text).toContain('*Name:* shop');
    expect(text).toContain('password authentication failed');
    expect(text).toContain('<https://github.com/octo-org/octo-repo/actions/runs/42|Workflow run>');
    expect(text).toContain('*Failed runs in a row:* 2');
  });
});

describe('notify inputs', () => {
  it('reads notify-on', () => {
    expect(parseNotifyOn(undefined, 'notify-on')).toBe('failure,recovery');
    expect(parseNotifyOn(' recovery , failure ', 'notify-on')).toBe('failure,recovery');
    expect(parseNotifyOn('always', 'notify-on')).toBe('always');
    expect(parseNotifyOn('failure', 'notify-on')).toBe('failure');
    expect(() => parseNotifyOn('sometimes', 'notify-on')).toThrow(
      "Input 'notify-on' must be one of 'failure', 'failure,recovery', 'always', got 'sometimes'.",
    );
  });

  it('chooses the events of each notify-on', () => {
    const events = ['failure', 'recovery', 'warning', 'success'] as const;
    const sent = (on: Parameters<typeof wantsEvent>[0]): string[] =>
      events.filter((e) => wantsEvent(on, e));
    expect(sent('failure')).toEqual(['failure', 'warning']);
    expect(sent('failure,recovery')).toEqual(['failure', 'recovery', 'warning']);
    expect(sent('always')).toEqual([...events]);
  });

  it('refuses what is not an https URL without showing the value', () => {
    const secret = 'not a url s3cr3t';
    let error: unknown;
    try {
      parseNotifyTargets([SLACK, secret], 'notify');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toBe(
      "Input 'notify': entry 2 is not a URL (the value is not shown: it is a secret).",
    );
    expect(() => parseNotifyTargets(['http://example.com/hook?token=s3cr3t'], 'notify')).toThrow(
      /^Input 'notify': entry 1 must be an https:\/\/ URL, got a http: URL\.$/,
    );
    expect(parseNotifyTargets(['https://example.com/hook'], 'notify')[0]!.kind).toBe('webhook');
  });
});
