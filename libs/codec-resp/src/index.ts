export * from './codes.js';
export * from './errors.js';
export * from './messages.js';
export { RespFramer, type FrameMode } from './frames.js';
export * from './decode.js';
export * from './encode.js';
