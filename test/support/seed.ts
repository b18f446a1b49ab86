// Stored messages for tests that need some in the store before they start: written through the
// gateway's one write path (the recorder), as the flows write them.
import { createLogger } from '../../src/observability/log.js';
import type { NewOutboxItem } from '../../src/outbox/items.js';
import type { OutboxPublisher } from '../../src/outbox/relay.js';
import { outcome } from '../../src/tracking/outcome.js';
import { Receipts } from '../../src/tracking/receipts.js';
import { OutcomeRecorder } from '../../src/tracking/recorder.js';
import type { MessagePatch, NewEvent, NewExpectation, NewMessage, NewPayload, Store } from '../../src/tracking/store.js';

const TRACKING = { answerFallbackWindow: 'P14D' };
const silent = createLogger('silent');

function recorder(store: Store, outbox?: OutboxPublisher) {
  return new OutcomeRecorder({ store, receipts: new Receipts(store.db.kysely, TRACKING), log: silent, outbox });
}

export interface Seed {
  message: NewMessage;
  payloads?: NewPayload[];
  events?: NewEvent[];
  outbox?: NewOutboxItem[];
  expectations?: NewExpectation[];
}

/** Stores a message as a flow would; throws if its dedupe key is taken. */
export async function seedMessage(store: Store, seed: Seed, outbox?: OutboxPublisher): Promise<{ messageId: number; outboxIds: number[] }> {
  const recorded = await recorder(store, outbox).record(
    outcome(
      'delivered',
      { insert: seed.message },
      { event: 'GW-TEST', stage: 'store', decision: 'seeded' },
      {
        payloads: seed.payloads ?? [],
        events: seed.events ?? [],
        outbox: seed.outbox ?? [],
        expectations: seed.expectations ?? [],
      },
    ),
  );
  if (!recorded.stored) throw new Error(`seed ${seed.message.msg_id} not stored: ${recorded.conflict}`);
  return { messageId: recorded.messageId, outboxIds: recorded.items.map((i) => i.id) };
}

/** Changes a stored message as a later outcome would, with an event on its timeline. */
export async function seedUpdate(store: Store, id: number, patch: MessagePatch, events: NewEvent[] = []): Promise<void> {
  const recorded = await recorder(store).record(
    outcome('delivered', { update: id, patch }, { event: 'GW-TEST', stage: 'store', decision: 'seeded' }, { events }),
  );
  if (!recorded.stored) throw new Error(`seed update of #${id} not stored`);
}
