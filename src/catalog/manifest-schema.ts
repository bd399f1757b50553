/**
 * The manifest checked against its JSON schema, docs/manifest.schema.json, the copy users read.
 * ajv (bundled by ncc) rather than a hand-written check: one definition, documented and enforced.
 */
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import manifestSchema from '../../docs/manifest.schema.json' with { type: 'json' };

let validate: ValidateFunction | undefined;

function validator(): ValidateFunction {
  validate ??= new Ajv2020({ allErrors: true, allowUnionTypes: true }).compile(manifestSchema);
  return validate;
}

/** One schema error in words: the JSON pointer of the field and what is wrong with it. */
function inWords(error: ErrorObject): string {
  const at = error.instancePath || '/';
  switch (error.keyword) {
    case 'required': {
      const missing = (error.params as { missingProperty: string }).missingProperty;
      return `${error.instancePath}/${missing} is missing`;
    }
    case 'enum': {
      const allowed = (error.params as { allowedValues: unknown[] }).allowedValues;
      return `${at} must be one of ${allowed.map((v) => JSON.stringify(v)).join(', ')}`;
    }
    case 'type': {
      const type = (error.params as { type: string | string[] }).type;
      return `${at} must be ${[type].flat().join(' or ')}`;
    }
    case 'const':
      return `${at} must be ${JSON.stringify((error.params as { allowedValue: unknown }).allowedValue)}`;
    default:
      return `${at} ${error.message ?? 'is invalid'}`;
  }
}

/**
 * What is wrong with a parsed manifest against the schema, naming the field (`/tables/3/rows must
 * be integer`); undefined when it is valid.
 */
export function manifestSchemaProblem(value: unknown): string | undefined {
  const check = validator();
  if (check(value)) return undefined;
  const errors = check.errors ?? [];
  const first = errors[0] ? inWords(errors[0]) : 'it does not match the manifest schema';
  const more = errors.length > 1 ? ` (and ${errors.length - 1} more problem(s))` : '';
  return `${first}${more}`;
}
