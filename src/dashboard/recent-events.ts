import { EventsRecordSchema, isRecord, type MeshEvent } from '../model/records.js';
import { keys } from '../core/keys.js';
import { compareText } from '../core/compare-text.js';

const maxShown = 50;
/** The same change seen by several clusters within this long is shown once. */
const sameEventMs = 15_000;

/**
 * Every cluster's `/events/<cluster>` record merged, newest first. A change every federation
 * notices (a cluster that stopped heartbeating) arrives once per observer; it is shown once,
 * with the observers joined in `cluster` and their counts added.
 */
export function recentEvents(entries: [string, unknown][]): (MeshEvent & { cluster: string })[] {
  const all: (MeshEvent & { cluster: string })[] = [];
  for (const [key, value] of entries) {
    if (key.slice(keys.events.length).includes('/') || !isRecord(EventsRecordSchema, value)) continue;
    for (const event of value.events) all.push({ ...event, cluster: value.cluster });
  }
  all.sort((a, b) => Date.parse(b.at) - Date.parse(a.at) || compareText(a.cluster, b.cluster));
  const shown: (MeshEvent & { cluster: string })[] = [];
  for (const event of all) {
    const same = shown.find((e) => e.kind === event.kind && e.service === event.service && e.summary === event.summary
      && Math.abs(Date.parse(e.at) - Date.parse(event.at)) < sameEventMs);
    if (same) {
      if (!same.cluster.split(', ').includes(event.cluster)) same.cluster = [...same.cluster.split(', '), event.cluster].sort().join(', ');
      same.count = (same.count ?? 1) + (event.count ?? 1);
      continue;
    }
    if (shown.length < maxShown) shown.push({ ...event });
  }
  return shown;
}
