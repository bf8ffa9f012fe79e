export * from './api.js';
export { compileMasking, COLUMN_REDACTED, DEFAULT_MASKING_CONFIG, redactedText } from './compile.js';
export { Hint, hintsOf } from './detectors.js';
export { typeKind, type TypeKind } from './pg-types.js';
export * from './wire.js';
export { decodeBinaryArray, encodeBinaryArray, decodeBinaryScalar, type BinaryArray } from './pg-binary.js';
export { parseArray, serializeArray, type ArrayNode } from './pg-array.js';
export { assertJsonDepthWithin, assertJsonWalkable, jsonDeeperThan, MAX_JSON_DEPTH } from './json-depth.js';
