// What a message held for its receiver's certificate shows once it has left, as every release door
// records it.
import { expect } from 'chai';
import type { Store, TimelineEntry } from '../../src/tracking/store.js';
import { eventually } from './poll.js';

/** Waits until the held message is published, and checks its timeline: held, released, signed, encrypted, published, in that order. */
export async function releasedTimeline(store: Store, msgId: string): Promise<TimelineEntry> {
  const timeline = await eventually('published', async () => {
    const [entry] = await store.timeline(msgId);
    return entry.message.state === 'published' && entry;
  });
  const wanted = ['held-certificate', 'released', 'signed', 'encrypted', 'deliver-published'];
  expect(timeline.events.map((e) => e.event).filter((e) => wanted.includes(e))).to.deep.equal(wanted);
  return timeline;
}
