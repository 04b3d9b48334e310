import { createRequire } from 'node:module';

/**
 * TypeBox through its CommonJS build. Its ES module build is some 1,800 small files, and each
 * ES module costs more memory than a CommonJS one: importing it grew a sidecar's RSS by about
 * 11 MB, requiring it by about 6 MB (docs/benchmarks.md, "Memory"). Schemas from either build
 * are interchangeable (TypeBox marks them with global symbols), so fastify's own copy still reads ours.
 */
const require = createRequire(import.meta.url);

export const { Type } = require('@sinclair/typebox') as typeof import('@sinclair/typebox');
export const { Value } = require('@sinclair/typebox/value') as typeof import('@sinclair/typebox/value');
export type { Static, TSchema } from '@sinclair/typebox';
