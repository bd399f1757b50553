import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv } from 'ajv';
import * as ajvFormats from 'ajv-formats';
import { repoRoot } from './bundle.js';

/**
 * A check of a webhook body against `docs/notification.schema.json` (draft-07, strict, with
 * formats): true, or an error that lists what is off.
 */
export function notificationValidator(): (data: unknown) => boolean {
  const schema = JSON.parse(
    readFileSync(path.join(repoRoot, 'docs/notification.schema.json'), 'utf8'),
  ) as object;
  const ajv = new Ajv({ allErrors: true, strict: true });
  (ajvFormats as unknown as { default: (a: Ajv) => Ajv }).default(ajv);
  const validate = ajv.compile(schema);
  return (data) => {
    const ok = validate(data);
    if (!ok) throw new Error(JSON.stringify(validate.errors));
    return ok;
  };
}
