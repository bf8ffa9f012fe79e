import type { Rule } from 'eslint';

/** The `sluice/layer-boundaries` rule; see eslint-layer-boundaries.mjs. */
export declare const layerBoundaries: Rule.RuleModule;
