// Consumes gateway.dlq: every dead letter is recorded in the store (metadata + body), then acked.
// The queue itself is only the hand-over; ops work on the store, where a chosen entry can be
// listed, shown, replayed or discarded.
import type { Delivery } from '../../broker/consumer.js';
import { parseMessage } from '../../mapping/parse.js';
import { EVENTS } from '../../observability/events.js';
import type { Logger } from '../../observability/log.js';
import { classifyDeadLetter, type DeadLetterFacts } from './classify.js';
import type { DeadLetterRepository } from './repository.js';

export interface RecorderDeps {
  repo: DeadLetterRepository;
  log: Logger;
  maxMessageBytes: number;
  /** wait before returning a delivery the store could not take (it comes back at once otherwise) */
  retryDelayMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class DeadLetterRecorder {
  constructor(private readonly deps: RecorderDeps) {}

  /** Acks only once the dead letter is stored; a store failure returns it to the queue. */
  async handle(d: Delivery): Promise<void> {
    const facts = this.describe(d);
    try {
      const id = await this.deps.repo.record(facts, d.body, { contentType: d.properties.contentType, messageId: d.properties.messageId });
      d.ack();
      if (id === undefined) return;
      this.deps.log.warn(
        {
          event: EVENTS.deadLetterRecorded,
          deadLetterId: id,
          code: facts.code,
          origin: facts.origin,
          sourceQueue: facts.sourceQueue,
          msgId: facts.msgId ?? undefined,
          type: facts.msgType ?? undefined,
        },
        `dead letter #${id} recorded (${facts.code})`,
      );
    } catch (e) {
      this.deps.log.error({ event: EVENTS.transientRetry, reason: (e as Error).message }, 'dead letter not recorded: returning it to the DLQ');
      await sleep(this.deps.retryDelayMs);
      d.nack(true);
    }
  }

  /**
   * The broker's dead letters carry none of our headers: the MsgId and type are read from the
   * body (metadata only), so that ops can find them in the listing.
   */
  private describe(d: Delivery): DeadLetterFacts {
    const facts = classifyDeadLetter(d.headers, d.properties.messageId, d.body);
    if (facts.msgId) return facts;
    const parsed = parseMessage(d.body, { contentType: d.properties.contentType, maxBytes: this.deps.maxMessageBytes });
    if (!parsed.ok || parsed.value.doc.kind !== 'msghead') return facts;
    const m = parsed.value.doc;
    return {
      ...facts,
      msgId: m.msgId,
      msgType: m.type,
      fromHerId: m.sender.level2?.herId ?? m.sender.level1.herId ?? null,
      toHerId: m.receiver.level2?.herId ?? m.receiver.level1.herId ?? null,
    };
  }
}
