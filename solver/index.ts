export * from './llb/index.js';
export * from './solver.js';
