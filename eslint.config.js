// ESLint (flat config): typescript-eslint's type-checked rules on all TypeScript, and the layer
// boundaries read from the packages' Nx tags (scripts/eslint-layer-boundaries.mjs).
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';
import { layerBoundaries } from './scripts/eslint-layer-boundaries.mjs';

export default defineConfig(
  { ignores: ['**/dist/**', '**/node_modules/**', '.nx/**', 'coverage/**', 'libs/proto/src/gen/**', 'libs/proto/src/index.ts'] },
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      // One program for everything, resolved like vitest and tsx do (sources, not dist): no build needed.
      parserOptions: { project: './tsconfig.eslint.json', tsconfigRootDir: import.meta.dirname },
    },
    plugins: { sluice: { rules: { 'layer-boundaries': layerBoundaries } } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': ['error', { prefer: 'type-imports', fixStyle: 'inline-type-imports' }],
      // A caught `unknown` passed on as a rejection is the same as rethrowing it.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
      // Off on purpose: an `async` port method without `await` still turns a synchronous throw into a
      // rejection, which is what callers that fail closed on a rejected port rely on.
      '@typescript-eslint/require-await': 'off',
      'sluice/layer-boundaries': [
        'error',
        {
          allow: {
            'layer:contracts': [],
            'type:codec': ['type:codec'],
            'type:lib': ['type:lib', 'type:codec'],
            'type:service': ['type:lib', 'type:codec'],
            'type:app': ['type:service', 'type:lib', 'type:codec'],
          },
          specSupport: ['test/support'],
        },
      ],
    },
  },
  {
    // Tests and benchmarks read untyped JSON (fetch bodies, pg rows, event payloads) and asymmetric
    // matchers (expect.objectContaining) are typed `any`: the no-unsafe-* rules would only add casts.
    files: ['test/**/*.ts', 'bench/**/*.ts', '**/*.spec.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    // The scope chain walks start at `this` (`for (let scope = this; scope; scope = scope.parent)`):
    // a loop variable, not the `const self = this` closure capture the rule is about.
    files: ['libs/sql-classifier/src/lineage-scope.ts'],
    rules: { '@typescript-eslint/no-this-alias': 'off' },
  },
  {
    // The gRPC clients' methods are passed to one call() that invokes them with `method.call(client, …)`.
    files: ['services/proxy/src/ports/*.ts'],
    rules: { '@typescript-eslint/unbound-method': 'off' },
  },
);
