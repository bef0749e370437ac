export * from './ops.js';
export * from './digest.js';
export * from './definition.js';
