// The import boundaries `npm run lint` enforces, checked on the rule as eslint.config.js configures it.
import { Linter } from 'eslint';
import tseslint from 'typescript-eslint';
import { describe, expect, it } from 'vitest';
import { layerBoundaries } from '../scripts/eslint-layer-boundaries.mjs';

// eslint.config.js is plain JavaScript (ESLint loads it without a compiler), so it has no declarations.
const eslintConfigPath: string = '../eslint.config.js';
const { default: eslintConfig } = (await import(eslintConfigPath)) as { default: Linter.Config[] };

const root = new URL('..', import.meta.url).pathname;
const configured = eslintConfig.find((entry) => entry.rules?.['sluice/layer-boundaries'] !== undefined)?.rules?.['sluice/layer-boundaries'];
const linter = new Linter({ cwd: root });

const problemsIn = (file: string, code: string): string[] =>
  linter
    .verify(
      code,
      [
        {
          files: ['**/*.ts'],
          languageOptions: { parser: tseslint.parser },
          plugins: { sluice: { rules: { 'layer-boundaries': layerBoundaries } } },
          rules: { 'sluice/layer-boundaries': configured },
        },
      ],
      file,
    )
    .map((message) => message.message);

describe('layer boundaries from the Nx tags', () => {
  it('is configured in eslint.config.js', () => {
    expect(configured).toBeDefined();
  });

  it('keeps contracts free of every other workspace package', () => {
    expect(problemsIn('libs/contracts/src/x.ts', "import { a } from '@sluice/config';")).toHaveLength(1);
  });

  it('lets libs use libs, contracts and codecs but never services', () => {
    expect(problemsIn('libs/config/src/x.ts', "import { a } from '@sluice/contracts'; import { b } from '@sluice/codec-pg';")).toEqual([]);
    expect(problemsIn('libs/config/src/x.ts', "import { a } from '@sluice/policy';")).toHaveLength(1);
  });

  it('lets codecs use codecs only', () => {
    expect(problemsIn('libs/codec-pg/src/x.ts', "import { a } from '@sluice/codec-resp';")).toEqual([]);
    expect(problemsIn('libs/codec-pg/src/x.ts', "import { a } from '@sluice/contracts';")).toHaveLength(1);
  });

  it('never lets a service import another service, however it imports it', () => {
    const code = "import { a } from '@sluice/policy'; export * from '@sluice/audit/x'; await import('@sluice/masking'); type T = typeof import('@sluice/approval');";
    expect(problemsIn('services/proxy/src/x.ts', code)).toHaveLength(4);
  });

  it('puts the CLI above services and refuses unknown workspace names', () => {
    expect(problemsIn('cli/src/x.ts', "import { a } from '@sluice/policy';")).toEqual([]);
    expect(problemsIn('cli/src/x.ts', "import { a } from '@sluice/nope';")).toHaveLength(1);
  });

  it('refuses relative paths that leave the package, except specs reaching test/support', () => {
    expect(problemsIn('services/proxy/src/a/x.ts', "import { a } from '../ports.js';")).toEqual([]);
    expect(problemsIn('services/proxy/src/x.ts', "import { a } from '../../../libs/config/src/index.js';")).toHaveLength(1);
    expect(problemsIn('libs/identity/src/x.ts', "import { a } from '../../../test/support/oidc.js';")).toHaveLength(1);
    expect(problemsIn('libs/identity/src/x.spec.ts', "import { a } from '../../../test/support/oidc.js';")).toEqual([]);
  });

  it('leaves tests and benchmarks, which sit above every layer, unconstrained', () => {
    expect(problemsIn('test/x.ts', "import { a } from '../services/proxy/src/ports.js'; import { b } from '@sluice/policy';")).toEqual([]);
  });
});
