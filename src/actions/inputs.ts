import * as core from '@actions/core';
import { inputWording } from '../core/errors.js';
import { systemClock } from '../core/logger.js';
import { OptionReader, type FrontDoor } from '../options/reader.js';
import { gitContext } from '../options/shared.js';

/** Reads an input; `''` becomes undefined. */
export function optionalInput(name: string): string | undefined {
  const value = core.getInput(name);
  return value === '' ? undefined : value;
}

/** The action's options: its workflow inputs (secrets are inputs too, masked by the caller). */
export const inputs = new OptionReader({ value: optionalInput, secret: optionalInput });

/** Where an action runs: the runner's environment, workspace and workflow run. */
export function actionFrontDoor(env: NodeJS.ProcessEnv): FrontDoor {
  return {
    env,
    workspace: env.GITHUB_WORKSPACE || process.cwd(),
    git: gitContext(env),
    now: systemClock.now(),
    wording: inputWording,
  };
}
