// The one write path: an Outcome is stored in one transaction (its message row, payloads,
// timeline, expectations, outbox items and effects), then what it stored is published, then its
// stage line is logged. Both flows, manual routing and the EPJ's AppRecs record through here.
import type { Logger } from '../observability/log.js';
import { logStage } from '../observability/log.js';
import type { Publishable } from '../outbox/items.js';
import { justStored, type OutboxPublisher } from '../outbox/relay.js';
import { insertOutboxItems, type Lease } from '../outbox/table.js';
import type { Effect, Outcome } from './outcome.js';
import type { Receipts } from './receipts.js';
import type { Store, StoreTransaction } from './store.js';
import { insertAudit } from './tables/audit.js';
import { insertEvents } from './tables/events.js';
import { insertExpectations, reopenExpectations, resolveExpectation, supersedeExpectations } from './tables/expectations.js';
import { insertMessage, updateMessage } from './tables/messages.js';
import { insertPayloads } from './tables/payloads.js';

export type Recorded =
  | { stored: true; messageId: number; items: Publishable[]; published: boolean }
  /** the insert met a row with the same dedupe key: nothing was written */
  | { stored: false; conflict: 'duplicate'; existingId: number }
  /** the update's guard no longer held (someone else changed the row): nothing was written */
  | { stored: false; conflict: 'changed' };

export interface RecorderDeps {
  store: Store;
  receipts: Receipts;
  log: Logger;
  /** publishes what was stored at once and leases it meanwhile; without it, a running gateway's relay publishes */
  outbox?: OutboxPublisher;
}

/** Thrown inside the transaction to roll it back when the message row cannot be written. */
class Conflict extends Error {
  constructor(readonly recorded: Extract<Recorded, { stored: false }>) {
    super('conflict');
  }
}

export class OutcomeRecorder {
  constructor(private readonly deps: RecorderDeps) {}

  async record(o: Outcome): Promise<Recorded> {
    const { store, outbox } = this.deps;
    let stored: { messageId: number; items: Publishable[] };
    try {
      stored = await store.inTransaction(async (tx) => {
        const messageId = await this.writeMessage(tx, o);
        await insertPayloads(tx.trx, messageId, o.payloads, tx.now);
        await insertEvents(tx.trx, messageId, o.events, tx.now);
        await insertExpectations(tx.trx, messageId, o.expectations, tx.now);
        const ids = await insertOutboxItems(tx.trx, messageId, o.outbox, this.lease(tx.now), tx.now);
        for (const effect of o.effects) await this.apply(tx, messageId, effect);
        return { messageId, items: justStored(messageId, o.outbox, ids) };
      });
    } catch (e) {
      if (e instanceof Conflict) return e.recorded;
      throw e;
    }
    let published = true;
    for (const item of stored.items) published = (outbox ? await outbox.publishNow(item) : false) && published;
    const { level, ...line } = o.log;
    logStage(this.deps.log, { ...line, storeId: stored.messageId }, level ?? 'info');
    return { stored: true, ...stored, published };
  }

  private async writeMessage(tx: StoreTransaction, o: Outcome): Promise<number> {
    const m = o.message;
    if ('existing' in m) return m.existing;
    if ('update' in m) {
      if (!(await updateMessage(tx.trx, m.update, m.patch, tx.now, m.guard))) throw new Conflict({ stored: false, conflict: 'changed' });
      return m.update;
    }
    const written = await insertMessage(tx.trx, m.insert, tx.now);
    if ('existing' in written) throw new Conflict({ stored: false, conflict: 'duplicate', existingId: written.existing });
    return written.inserted;
  }

  private async apply(tx: StoreTransaction, messageId: number, e: Effect): Promise<void> {
    const { receipts } = this.deps;
    const now = new Date(tx.now);
    switch (e.effect) {
      case 'correlate':
        return receipts.apply(tx, e.correlation, e.by, now);
      case 'link-on-delivery':
        return receipts.linkOnDelivery(tx, e.model, e.conversationId, messageId, now);
      case 'resolve':
        return resolveExpectation(tx.trx, messageId, e.kind, { state: 'met', by: e.by, alertResolved: e.alertResolved }, tx.now);
      case 'raise-on':
        if (e.expectation) await reopenExpectations(tx.trx, e.messageId, [e.expectation], tx.now);
        return insertEvents(tx.trx, e.messageId, e.events, tx.now);
      case 'supersede':
        await supersedeExpectations(tx.trx, messageId, e.by, tx.now);
        return reopenExpectations(tx.trx, messageId, e.expectations, tx.now);
      case 'audit':
        await insertAudit(tx.trx, e.entry, tx.now);
        return;
    }
  }

  /** Leased to this process while it publishes; with no publisher here, due for the relay at once. */
  private lease(now: string): Lease {
    return this.deps.outbox?.lease() ?? { owner: null, until: new Date(now) };
  }
}
