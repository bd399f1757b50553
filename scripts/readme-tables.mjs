// Writes each action's inputs and outputs tables into README.md, between
// `<!-- inputs:<action> -->` and `<!-- /inputs:<action> -->`, from its action.yml, so the
// README cannot drift from the metadata. `--check` fails when README.md is not current.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as prettier from 'prettier';
import { parse } from 'yaml';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const readmePath = path.join(root, 'README.md');
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

const current = readFileSync(readmePath, 'utf8');
const options = await prettier.resolveConfig(readmePath);
const next = await prettier.format(render(current), { ...options, filepath: readmePath });
if (process.argv.includes('--check')) {
  if (next !== current) {
    console.error('README.md inputs tables are not current: run node scripts/readme-tables.mjs');
    process.exit(1);
  }
} else if (next !== current) {
  writeFileSync(readmePath, next);
  console.log('README.md tables updated');
}
