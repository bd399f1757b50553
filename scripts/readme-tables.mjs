// Writes each action's inputs and outputs tables into its reference, actions/<action>/README.md,
// between `<!-- inputs:<action> -->` and `<!-- /inputs:<action> -->`, from its action.yml, so
// the reference cannot drift from the metadata. `--check` fails when a reference is not
// current or has no such place for its tables.
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as prettier from 'prettier';
import { parse } from 'yaml';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cell = (s) =>
  String(s ?? '')
    .replace(/\|/g, '\\|')
    .replace(/\n/g, ' ')
    .trim();

export function tables(action) {
  const meta = parse(readFileSync(path.join(root, 'actions', action, 'action.yml'), 'utf8'));
  const lines = ['| input | default | description |', '| --- | --- | --- |'];
  for (const [k, v] of Object.entries(meta.inputs ?? {})) {
    const def =
      v.default !== undefined && v.default !== ''
        ? `\`${cell(v.default)}\``
        : v.required
          ? 'required'
          : '';
    lines.push(`| \`${k}\` | ${def} | ${cell(v.description)} |`);
  }
  lines.push('', '| output | description |', '| --- | --- |');
  for (const [k, v] of Object.entries(meta.outputs ?? {}))
    lines.push(`| \`${k}\` | ${cell(v.description)} |`);
  return lines.join('\n');
}

export function render(readme) {
  return readme.replace(
    /<!-- inputs:([a-z-]+) -->(?:\n[\s\S]*?<!-- \/inputs:\1 -->)?/g,
    (_, action) => `<!-- inputs:${action} -->\n\n${tables(action)}\n\n<!-- /inputs:${action} -->`,
  );
}

const check = process.argv.includes('--check');
const actions = readdirSync(path.join(root, 'actions')).filter((name) =>
  existsSync(path.join(root, 'actions', name, 'action.yml')),
);
let stale = 0;
for (const action of actions) {
  const readmePath = path.join(root, 'actions', action, 'README.md');
  const relative = path.relative(root, readmePath);
  const current = existsSync(readmePath) ? readFileSync(readmePath, 'utf8') : '';
  if (!current.includes(`<!-- inputs:${action} -->`)) {
    console.error(`${relative} has no <!-- inputs:${action} --> line for the inputs tables.`);
    stale++;
    continue;
  }
  const options = await prettier.resolveConfig(readmePath);
  const next = await prettier.format(render(current), { ...options, filepath: readmePath });
  if (next === current) continue;
  if (check) {
    console.error(`${relative}: the inputs tables are not current.`);
    stale++;
  } else {
    writeFileSync(readmePath, next);
    console.log(`${relative}: tables updated`);
  }
}
if (stale > 0) {
  if (check) console.error('Run `npm run readme` to regenerate them from action.yml.');
  process.exit(1);
}
