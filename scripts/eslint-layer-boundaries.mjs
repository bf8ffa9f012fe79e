// ESLint rule `sluice/layer-boundaries`: the layers of the workspace, read from each package's Nx tags
// (package.json `nx.tags`), enforced on every import in its source. It works from the manifests alone,
// so it needs neither the Nx daemon nor Nx Cloud, and it sees imports the manifests do not declare.
//
// Options: { allow: { '<tag>': ['<tag it may import>', …] }, specSupport: ['test/support'] }.
// Every listed tag a package carries constrains its imports (as Nx's depConstraints do); a package with
// no listed tag may import no workspace package (fail closed), and an unknown `@sluice/` name is refused.
// A relative import may not leave its package; only unit specs (*.spec.ts) may reach `specSupport`.
// Files outside every package (test/, bench/, scripts/) sit above all layers and are not constrained.
import { readFileSync, existsSync, readdirSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';

const workspaceRoot = resolve(dirname(new URL(import.meta.url).pathname), '..');
const scope = '@sluice/';

/** @returns {{ dir: string, name: string, tags: string[] }[]} every workspace package, from the root manifest's globs. */
const readWorkspacePackages = () => {
  const rootManifest = JSON.parse(readFileSync(join(workspaceRoot, 'package.json'), 'utf8'));
  const dirs = rootManifest.workspaces.flatMap((pattern) => {
    if (!pattern.endsWith('/*')) return [join(workspaceRoot, pattern)];
    const parent = join(workspaceRoot, pattern.slice(0, -2));
    return readdirSync(parent, { withFileTypes: true }).filter((entry) => entry.isDirectory()).map((entry) => join(parent, entry.name));
  });
  return dirs
    .filter((dir) => existsSync(join(dir, 'package.json')))
    .map((dir) => {
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
      return { dir, name: manifest.name, tags: manifest.nx?.tags ?? [] };
    });
};

const packages = readWorkspacePackages();
const packageByName = new Map(packages.map((pkg) => [pkg.name, pkg]));
const isInside = (dir, path) => path === dir || path.startsWith(dir + sep);
const owningPackage = (path) => packages.find((pkg) => isInside(pkg.dir, path));

/** `@sluice/contracts/sub/path` → `@sluice/contracts`. */
const packageNameOf = (specifier) => specifier.split('/').slice(0, 2).join('/');

export const layerBoundaries = {
  meta: {
    type: 'problem',
    docs: { description: 'Imports follow the layers set by the packages’ Nx tags; no relative paths across packages' },
    schema: [
      {
        type: 'object',
        properties: {
          allow: { type: 'object', additionalProperties: { type: 'array', items: { type: 'string' } } },
          specSupport: { type: 'array', items: { type: 'string' } },
        },
        required: ['allow'],
        additionalProperties: false,
      },
    ],
    messages: {
      crossesPackage: "'{{specifier}}' reaches into another package by a relative path; import it as a workspace package ('@sluice/…').",
      unknownPackage: "'{{specifier}}' is not a workspace package.",
      layerViolation: "{{from}} ({{fromTags}}) may not import {{to}} ({{toTags}}).",
    },
  },
  create(context) {
    const allow = context.options[0]?.allow ?? {};
    const filename = resolve(context.filename);
    const from = owningPackage(filename);
    if (from === undefined) return {};
    const reachableByPath = [from.dir];
    if (filename.endsWith('.spec.ts')) reachableByPath.push(...(context.options[0]?.specSupport ?? []).map((dir) => join(workspaceRoot, dir)));

    const check = (node, specifier) => {
      if (typeof specifier !== 'string') return;
      if (specifier.startsWith('.')) {
        const target = resolve(dirname(filename), specifier);
        if (!reachableByPath.some((dir) => isInside(dir, target))) context.report({ node, messageId: 'crossesPackage', data: { specifier } });
        return;
      }
      if (!specifier.startsWith(scope)) return;
      const name = packageNameOf(specifier);
      if (name === from.name) return;
      const to = packageByName.get(name);
      if (to === undefined) {
        context.report({ node, messageId: 'unknownPackage', data: { specifier } });
        return;
      }
      // As in Nx: every constraint that applies to the importer must hold, and none applying means no imports.
      const constraints = from.tags.filter((tag) => tag in allow).map((tag) => allow[tag]);
      if (constraints.length === 0 || !constraints.every((allowedTags) => to.tags.some((tag) => allowedTags.includes(tag)))) {
        context.report({
          node,
          messageId: 'layerViolation',
          data: { from: from.name, fromTags: from.tags.join(', ') || 'no tags', to: to.name, toTags: to.tags.join(', ') || 'no tags' },
        });
      }
    };
    const checkSource = (node) => check(node.source ?? node, node.source?.value);
    return {
      ImportDeclaration: checkSource,
      ExportAllDeclaration: checkSource,
      ExportNamedDeclaration: (node) => node.source && checkSource(node),
      ImportExpression: (node) => node.source.type === 'Literal' && check(node.source, node.source.value),
      // `typeof import('…')` in a type position.
      TSImportType: (node) => {
        const literal = node.source ?? node.argument?.literal;
        if (literal?.type === 'Literal') check(literal, literal.value);
      },
    };
  },
};
