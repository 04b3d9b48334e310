import { isMap, isScalar, isSeq, stringify, type Node, type Pair, type YAMLMap, type YAMLSeq } from 'yaml';

/*
 * Edits to YAML text that touch nothing but whole lines of their own. The yaml package's
 * Document API finds where things are (every node knows its offsets in the source); the text
 * around them is never re-printed, so comments, quoting, blank lines, anchors and key order of
 * the user's file stay byte for byte, and removing what was inserted gives the original back.
 *
 * Only block-style lists and mappings are edited: a line-based insertion into a flow
 * collection (`[a, b]`) would have to rewrite it.
 */

export interface Edit {
  /** Offset in the source where `text` goes, or where the removed span starts. */
  start: number;
  /** End of the removed span; equal to start for an insertion. */
  end: number;
  text: string;
  /** The column an insertion's lines start at. */
  indent?: number;
}

export type Range = [number, number, number];

function rangeOf(node: Node | Pair): Range {
  const range = 'range' in node ? node.range : undefined;
  if (!range) throw new Error('a YAML node without a source range');
  return range;
}

function lineStart(text: string, offset: number): number {
  return text.lastIndexOf('\n', offset - 1) + 1;
}

/** The offset just after the line that holds the character before `offset`. */
function lineEnd(text: string, offset: number): number {
  if (offset > 0 && text[offset - 1] === '\n') return offset;
  const newline = text.indexOf('\n', offset);
  return newline === -1 ? text.length : newline + 1;
}

const column = (text: string, offset: number) => offset - lineStart(text, offset);

/** `value` as block YAML, every line indented by `indent` spaces. */
function block(value: unknown, indent: number): string {
  const pad = ' '.repeat(indent);
  return stringify(value, { lineWidth: 0, minContentWidth: 0, aliasDuplicateObjects: false }).replace(/^(?=.)/gm, pad);
}

/** An insertion of whole lines at `offset`, a line start (the text ends with a newline: see withFinalNewline). */
function insertLines(offset: number, lines: string, indent: number): Edit {
  return { start: offset, end: offset, text: lines, indent };
}

/** The removal of the whole lines from the one holding `from` to the one holding `to - 1`. */
function removeLines(text: string, from: number, to: number): Edit {
  return { start: lineStart(text, from), end: lineEnd(text, to), text: '' };
}

/**
 * Runs line edits on a text that ends with a newline, as they need; a text without one gets it
 * for the edits and loses it again after, so removing what was inserted still gives it back.
 */
export function withFinalNewline(text: string, edit: (text: string) => string): string {
  if (text === '' || text.endsWith('\n')) return edit(text);
  return edit(`${text}\n`).replace(/\n$/, '');
}

export const isBlockSeq = (node: unknown): node is YAMLSeq<unknown> => isSeq(node) && !node.flow && node.items.length > 0;
export const isBlockMap = (node: unknown): node is YAMLMap<unknown, unknown> => isMap(node) && !node.flow && node.items.length > 0;

export function appendToSeq(text: string, seq: YAMLSeq<unknown>, items: unknown[]): Edit {
  const last = seq.items.at(-1) as Node;
  const indent = column(text, rangeOf(seq)[0]);
  return insertLines(lineEnd(text, rangeOf(last)[1]), block(items, indent), indent);
}

export function prependToSeq(text: string, seq: YAMLSeq<unknown>, items: unknown[]): Edit {
  const start = rangeOf(seq)[0];
  return insertLines(lineStart(text, start), block(items, column(text, start)), column(text, start));
}

/** A new `key: value` after the mapping's last entry. */
export function addToMap(text: string, map: YAMLMap<unknown, unknown>, key: string, value: unknown): Edit {
  const last = map.items.at(-1) as Pair<Node, Node | null>;
  const end = last.value ? rangeOf(last.value)[1] : rangeOf(last.key)[1];
  const indent = column(text, rangeOf(map)[0]);
  return insertLines(lineEnd(text, end), block({ [key]: value }, indent), indent);
}

/** The removal of one entry of a block mapping, key and value. */
export function removePair(text: string, pair: Pair<Node, Node | null>): Edit {
  return removeLines(text, rangeOf(pair.key)[0], pair.value ? rangeOf(pair.value)[1] : rangeOf(pair.key)[1]);
}

/** The removal of one item of a block sequence. */
export function removeItem(text: string, item: Node): Edit {
  return removeLines(text, rangeOf(item)[0], rangeOf(item)[1]);
}

/** The pair of a block mapping whose key is the plain scalar `key`. */
export function pairOf(map: YAMLMap<unknown, unknown>, key: string): Pair<Node, Node | null> | undefined {
  return map.items.find((p) => isScalar(p.key) && p.key.value === key) as Pair<Node, Node | null> | undefined;
}

/**
 * Applies edits that do not overlap. Insertions at one offset (the end of a container is also
 * the end of its pod spec) go deepest first, so each lands inside the block it belongs to; at
 * one depth they keep their order.
 */
export function applyEdits(text: string, edits: Edit[]): string {
  const ordered = edits.map((edit, i) => ({ edit, i }))
    .sort((a, b) => b.edit.start - a.edit.start || (a.edit.indent ?? 0) - (b.edit.indent ?? 0) || b.i - a.i);
  let result = text;
  for (const { edit } of ordered) result = result.slice(0, edit.start) + edit.text + result.slice(edit.end);
  return result;
}
