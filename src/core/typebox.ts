/**
 * TypeBox, from one place. Isthmus uses its type builder and `Value` checks; the processes run
 * from the bundle `npm run build` makes (scripts/bundle.mjs), where TypeBox's ES modules let
 * the bundler keep only those parts. Schemas are plain objects marked with global symbols, so
 * fastify's copy of TypeBox reads ours.
 */
export { Type, type Static, type TArray, type TObject, type TProperties, type TSchema } from '@sinclair/typebox';
export { Value } from '@sinclair/typebox/value';
