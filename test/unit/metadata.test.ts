import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { NoOperationTraceWriter, parseWorkflow } from '@actions/workflow-parser';
import { parseAction } from '@actions/workflow-parser/actions/action-parser';
import { parse as parseYaml } from 'yaml';
import { Inputs, Outputs } from '../../src/actions/names.js';
import { repoRoot } from '../support/bundle.js';

/** GitHub's own parser for action.yml and workflow files, as the runner and the editor use it. */
function actionErrors(name: string, content: string): string[] {
  const result = parseAction({ name, content }, new NoOperationTraceWriter());
  return result.context.errors.getErrors().map((e) => e.message);
}

function workflowErrors(name: string, content: string): string[] {
  const result = parseWorkflow({ name, content }, new NoOperationTraceWriter());
  return result.context.errors.getErrors().map((e) => e.message);
}

interface ActionYaml {
  inputs?: Record<string, { description?: string; required?: boolean }>;
  outputs?: Record<string, { description?: string }>;
  runs: { using: string; main: string; post?: string };
  branding?: { icon?: string; color?: string };
}

const actionsDir = path.join(repoRoot, 'actions');
const actions = readdirSync(actionsDir).filter((d) =>
  existsSync(path.join(actionsDir, d, 'action.yml')),
);

describe('action metadata', () => {
  it('has the five actions', () => {
    expect(actions.sort()).toEqual(['backup', 'backup-files', 'prune', 'restore-drill', 'verify']);
  });

  it.each(actions)(
    'actions/%s/action.yml is valid for GitHub, runs on node24 from its bundle',
    (name) => {
      const file = path.join(actionsDir, name, 'action.yml');
      const content = readFileSync(file, 'utf8');
      expect(actionErrors(file, content)).toEqual([]);
      const meta = parseYaml(content) as ActionYaml;
      expect(meta.runs.using).toBe('node24');
      expect(meta.runs.main).toBe(`../../dist/${name}/index.js`);
      expect(existsSync(path.join(actionsDir, name, meta.runs.main))).toBe(true);
      if (meta.runs.post)
        expect(existsSync(path.join(actionsDir, name, meta.runs.post))).toBe(true);
      expect(meta.branding?.icon).toBeTruthy();
      expect(meta.branding?.color).toBeTruthy();
      const knownInputs = new Set<string>(Object.values(Inputs));
      const knownOutputs = new Set<string>(Object.values(Outputs));
      for (const [input, def] of Object.entries(meta.inputs ?? {})) {
        expect([input, knownInputs.has(input)]).toEqual([input, true]);
        expect(def.description?.length ?? 0).toBeGreaterThan(10);
      }
      for (const [output, def] of Object.entries(meta.outputs ?? {})) {
        expect([output, knownOutputs.has(output)]).toEqual([output, true]);
        expect(def.description?.length ?? 0).toBeGreaterThan(5);
      }
    },
  );

  it('the parser rejects a broken action.yml (the check can fail)', () => {
    const broken = 'name: x\ndescription: y\nruns:\n  using: node99\n  main: index.js\n';
    expect(actionErrors('broken.yml', broken).length).toBeGreaterThan(0);
    expect(
      workflowErrors('broken.yml', 'on: push\njobs:\n  a:\n    runs-on: x\n    steps: 5\n').length,
    ).toBeGreaterThan(0);
  });
});

describe('workflows', () => {
  const workflowsDir = path.join(repoRoot, '.github/workflows');
  const files = readdirSync(workflowsDir).filter((f) => /\.ya?ml$/.test(f));
  it.each(files)('.github/workflows/%s is a valid workflow', (file) => {
    const content = readFileSync(path.join(workflowsDir, file), 'utf8');
    expect(workflowErrors(file, content)).toEqual([]);
  });

  it('every workflow in the README is valid, gives every required input, and only inputs that exist', () => {
    const docs = [path.join(repoRoot, 'README.md')];
    const docsDir = path.join(repoRoot, 'docs');
    if (existsSync(docsDir)) {
      for (const f of readdirSync(docsDir)) if (f.endsWith('.md')) docs.push(path.join(docsDir, f));
    }
    const inputsOf = new Map<string, Set<string>>();
    const requiredOf = new Map<string, string[]>();
    for (const name of actions) {
      const meta = parseYaml(
        readFileSync(path.join(actionsDir, name, 'action.yml'), 'utf8'),
      ) as ActionYaml;
      inputsOf.set(name, new Set(Object.keys(meta.inputs ?? {})));
      requiredOf.set(
        name,
        Object.entries(meta.inputs ?? {})
          .filter(([, def]) => def.required)
          .map(([input]) => input),
      );
    }
    let checked = 0;
    for (const doc of docs.filter(existsSync)) {
      const text = readFileSync(doc, 'utf8');
      for (const m of text.matchAll(/```ya?ml\n([\s\S]*?)```/g)) {
        const block = m[1];
        if (!/^jobs:/m.test(block) || !/^on:/m.test(block)) continue;
        expect([doc, workflowErrors(doc, block)]).toEqual([doc, []]);
        const workflow = parseYaml(block) as {
          jobs: Record<string, { steps?: { uses?: string; with?: Record<string, unknown> }[] }>;
        };
        for (const job of Object.values(workflow.jobs)) {
          for (const step of job.steps ?? []) {
            const action = /\/actions\/([a-z-]+)@/.exec(step.uses ?? '')?.[1];
            if (!action || !inputsOf.has(action)) continue;
            for (const input of requiredOf.get(action)!) {
              expect([doc, action, input, input in (step.with ?? {})]).toEqual([
                doc,
                action,
                input,
                true,
              ]);
            }
            for (const input of Object.keys(step.with ?? {})) {
              expect([doc, action, input, inputsOf.get(action)!.has(input)]).toEqual([
                doc,
                action,
                input,
                true,
              ]);
            }
          }
        }
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(0);
  });
});
