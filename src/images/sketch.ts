/** The offline dev model's renderer; the code lives in ./sketch/ (see its index.ts). */
export * from './sketch/index.ts';
