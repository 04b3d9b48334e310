import { createRequire } from 'node:module';

/**
 * TypeBox through its CommonJS build. Its ES module build is some 1,800 small files, and an ES
 * module costs more memory than a CommonJS one: in a fresh process importing it grew RSS by
 * about 11 MB and requiring it by about 6 MB; in the sidecar's module graph the switch saved
 * about 2 MB (docs/benchmarks.md, "Memory of one sidecar process"). Schemas from either build
 * are interchangeable (TypeBox marks them with global symbols), so fastify's copy reads ours.
 */
const require = createRequire(import.meta.url);

export const { Type } = require('@sinclair/typebox') as typeof import('@sinclair/typebox');
export const { Value } = require('@sinclair/typebox/value') as typeof import('@sinclair/typebox/value');
export type { Static, TSchema } from '@sinclair/typebox';
