import { errorMessage, OptionError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ActionName } from '../catalog/runs.js';

/** What happened: a failed run, the first success after failures, a warning, or a plain success. */
export type AlertEvent = 'failure' | 'recovery' | 'warning' | 'success';

/**
 * The JSON body POSTed to a webhook, documented by `docs/notification.schema.json`. Slack gets
 * the same facts as a Slack message.
 */
export interface Notification {
  event: AlertEvent;
  action: ActionName;
  name: string;
  backupId?: string;
  /** One paragraph: what failed, what recovered, or what the warning is. */
  message: string;
  runUrl?: string;
  /** `owner/repo`. */
  repository?: string;
  /** When the run reported, ISO 8601. */
  time: string;
  /** Failures: the first run of the failing streak; recoveries: when the failures began. */
  failingSince?: string;
  /** Failures: failed runs in a row, this one included; recoveries: how many there were. */
  failedRuns?: number;
  /** The GitHub issue that tracks it, when there is one. */
  issueUrl?: string;
}

/** When to notify: `failure` (failures and warnings), `failure,recovery`, or `always`. */
export const NOTIFY_ON = ['failure', 'failure,recovery', 'always'] as const;
export type NotifyOn = (typeof NOTIFY_ON)[number];

/** Reads `notify-on`; spaces around the comma are allowed, anything else is an error. */
export function parseNotifyOn(text: string | undefined, input: string): NotifyOn {
  if (text === undefined || text.trim() === '') return 'failure,recovery';
  const normalized = text
    .split(',')
    .map((part) => part.trim().toLowerCase())
    .filter((part) => part !== '')
    .sort()
    .join(',');
  const found = NOTIFY_ON.find((choice) => choice === normalized);
  if (!found) {
    throw new OptionError(
      input,
      (w) =>
        `${w.option(input)} must be one of ${NOTIFY_ON.map((c) => `'${c}'`).join(', ')}, got '${text}'.`,
    );
  }
  return found;
}

/** Whether `event` is sent under `notifyOn`. Warnings go wherever failures go. */
export function wantsEvent(notifyOn: NotifyOn, event: AlertEvent): boolean {
  if (notifyOn === 'always') return true;
  if (event === 'failure' || event === 'warning') return true;
  return event === 'recovery' && notifyOn === 'failure,recovery';
}

/** A notify URL, checked: https (or http to a loopback address, for tests and local relays). */
export interface NotifyTarget {
  url: string;
  kind: 'slack' | 'webhook';
  /** How logs name it: never the URL, which is a secret. */
  label: string;
}

/** Reads the `notify` list into targets; a value that is not such a URL is a ConfigurationError. */
export function parseNotifyTargets(urls: string[], input: string): NotifyTarget[] {
  return urls.map((text, i) => {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new OptionError(
        input,
        (w) =>
          `${w.option(input)}: entry ${i + 1} is not a URL (the value is not shown: it is a secret).`,
      );
    }
    const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
      throw new OptionError(
        input,
        (w) =>
          `${w.option(input)}: entry ${i + 1} must be an https:// URL, got a ${url.protocol} URL.`,
      );
    }
    const kind = url.hostname === 'hooks.slack.com' ? 'slack' : 'webhook';
    return { url: text, kind, label: `${kind === 'slack' ? 'Slack' : 'webhook'} #${i + 1}` };
  });
}

/** One HTTP POST with a JSON body; resolves with the status, rejects on a network failure. */
export type HttpPoster = (
  url: string,
  body: string,
  signal: AbortSignal,
) => Promise<{ status: number; retryAfter?: string }>;

/** The global `fetch` as an HttpPoster. */
export const fetchPoster: HttpPoster = async (url, body, signal) => {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'User-Agent': 'pg-backup-actions' },
    body,
    signal,
  });
  await response.arrayBuffer().catch(() => undefined);
  return { status: response.status, retryAfter: response.headers.get('retry-after') ?? undefined };
};

/**
 * How hard delivery tries. An attempt that gets no answer within `attemptTimeoutMs` is given up;
 * waits between attempts double from `firstDelayMs`; nothing is tried once `totalMs` has passed
 * since the first attempt, so one notification delays the step by at most `totalMs` (all targets
 * are delivered at the same time).
 */
export interface DeliveryPolicy {
  attempts: number;
  firstDelayMs: number;
  attemptTimeoutMs: number;
  totalMs: number;
}

/** The documented bound: 5 attempts, waits of 1, 2, 4 and 8 s, 10 s per attempt, 30 s in all. */
export const DEFAULT_DELIVERY: DeliveryPolicy = {
  attempts: 5,
  firstDelayMs: 1000,
  attemptTimeoutMs: 10_000,
  totalMs: 30_000,
};

export interface NotifyDeps {
  post: HttpPoster;
  logger: Logger;
  policy?: DeliveryPolicy;
}

/** Sends `notification` to every target; undeliverable ones are warnings, never errors. */
export async function notifyAll(
  targets: NotifyTarget[],
  notification: Notification,
  deps: NotifyDeps,
): Promise<{ delivered: number; failed: number }> {
  const results = await Promise.all(targets.map((target) => deliver(target, notification, deps)));
  const delivered = results.filter(Boolean).length;
  return { delivered, failed: results.length - delivered };
}

/** Delivers to one target with retries; true when it was accepted (2xx). */
export async function deliver(
  target: NotifyTarget,
  notification: Notification,
  deps: NotifyDeps,
): Promise<boolean> {
  const policy = deps.policy ?? DEFAULT_DELIVERY;
  const body = JSON.stringify(target.kind === 'slack' ? slackMessage(notification) : notification);
  const deadline = Date.now() + policy.totalMs;
  let last = '';
  for (let attempt = 1; attempt <= policy.attempts; attempt++) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), Math.min(policy.attemptTimeoutMs, left));
    let retryAfterMs: number | undefined;
    try {
      const answer = await deps.post(target.url, body, controller.signal);
      if (answer.status >= 200 && answer.status < 300) {
        deps.logger.info(`Sent the ${notification.event} notification to ${target.label}.`);
        return true;
      }
      last = `answered ${answer.status}`;
      const retryable = answer.status >= 500 || answer.status === 429 || answer.status === 408;
      if (!retryable) break;
      const seconds = Number(answer.retryAfter);
      if (Number.isFinite(seconds) && seconds >= 0) retryAfterMs = seconds * 1000;
    } catch (error) {
      last = controller.signal.aborted
        ? `gave no answer within ${formatMs(Math.min(policy.attemptTimeoutMs, left))}`
        : redactUrl(errorMessage(error), target.url);
    } finally {
      clearTimeout(timer);
    }
    if (attempt === policy.attempts) break;
    const wait = Math.max(retryAfterMs ?? 0, policy.firstDelayMs * 2 ** (attempt - 1));
    if (Date.now() + wait >= deadline) break;
    deps.logger.debug(`${target.label} ${last}; trying again in ${formatMs(wait)}.`);
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
  deps.logger.warning(
    `Could not deliver the ${notification.event} notification to ${target.label} (${last}); ` +
      "the step's result does not change.",
  );
  return false;
}

const TITLES: Record<AlertEvent, string> = {
  failure: 'failed',
  recovery: 'recovered',
  warning: 'warning',
  success: 'passed',
};

const EMOJI: Record<AlertEvent, string> = {
  failure: ':red_circle:',
  recovery: ':large_green_circle:',
  warning: ':warning:',
  success: ':white_check_mark:',
};

/** Slack's text escaping: &, < and > are control characters in mrkdwn. */
function slackEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A Slack incoming-webhook message: a fallback `text` and blocks with status, name, what, link. */
export function slackMessage(n: Notification): { text: string; blocks: unknown[] } {
  const headline = `${n.action} ${TITLES[n.event]}: ${n.name}`;
  const facts = [
    `*Status:* ${TITLES[n.event]}`,
    `*Name:* ${slackEscape(n.name)}`,
    `*Action:* ${n.action}`,
    ...(n.backupId ? [`*Backup:* \`${n.backupId}\``] : []),
    ...(n.repository ? [`*Repository:* ${slackEscape(n.repository)}`] : []),
    ...(n.failedRuns && n.failedRuns > 1 && n.event === 'failure'
      ? [
          `*Failed runs in a row:* ${n.failedRuns}${n.failingSince ? ` (since ${n.failingSince})` : ''}`,
        ]
      : []),
  ];
  const links = [
    ...(n.runUrl ? [`<${n.runUrl}|Workflow run>`] : []),
    ...(n.issueUrl ? [`<${n.issueUrl}|Issue>`] : []),
  ];
  const message = n.message.length > 2900 ? `${n.message.slice(0, 2900)}…` : n.message;
  return {
    text: `${EMOJI[n.event]} ${slackEscape(headline)}`,
    blocks: [
      { type: 'header', text: { type: 'plain_text', text: headline.slice(0, 150) } },
      { type: 'section', fields: facts.slice(0, 10).map((text) => ({ type: 'mrkdwn', text })) },
      { type: 'section', text: { type: 'mrkdwn', text: slackEscape(message) } },
      ...(links.length > 0
        ? [{ type: 'context', elements: [{ type: 'mrkdwn', text: links.join(' · ') }] }]
        : []),
    ],
  };
}

function redactUrl(text: string, url: string): string {
  let out = text.split(url).join('***');
  try {
    const parsed = new URL(url);
    if (parsed.pathname.length > 1) out = out.split(parsed.pathname).join('/***');
    if (parsed.search) out = out.split(parsed.search).join('?***');
  } catch {
    // parseNotifyTargets let only URLs through.
  }
  return out;
}

function formatMs(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms / 100) / 10} s` : `${ms} ms`;
}
