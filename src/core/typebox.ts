/**
 * TypeBox, from one place. Isthmus uses its type builder and `Value` checks; the processes run
 * from the bundle `npm run build` makes (scripts/bundle.mjs), where TypeBox's ES modules let
 * the bundler keep only those parts. Schemas are plain objects marked with global symbols, so
 * fastify's copy of TypeBox reads ours.
 */
import {
  Array as ArrayOf, Boolean as BooleanType, Integer, Literal, Null, Number as NumberType, Object as ObjectOf, Omit,
  Optional, Record, String as StringType, Union, Unknown,
} from '@sinclair/typebox';
import { Errors } from '@sinclair/typebox/errors';
import { Check, Clone, Default } from '@sinclair/typebox/value';

export type { Static, TArray, TObject, TProperties, TSchema } from '@sinclair/typebox';

/**
 * The type builders Isthmus uses, under TypeBox's own names (`Type.Object`, ...). TypeBox's
 * `Type` is one object with every builder on it, and its `Value` one with every operation (cast,
 * convert, diff, patch, hash, transform, ...): importing either keeps all of them in every
 * bundled process. Naming the ones used lets the bundle keep only what they reach, 54 KB less
 * source text for `Value` alone in each sidecar. A builder or operation not listed here is added
 * here.
 */
export const Type = {
  Array: ArrayOf, Boolean: BooleanType, Integer, Literal, Null, Number: NumberType, Object: ObjectOf, Omit,
  Optional, Record, String: StringType, Union, Unknown,
} as const;

export const Value = { Check, Clone, Default, Errors } as const;

