// What the DLQ recorder makes of a dead letter's headers: the gateway's own (x-error-*), the
// broker's (x-death after a quorum queue's delivery limit), and anything else.
import { expect } from 'chai';
import { classifyDeadLetter, replayHeaders } from '../../src/ops/deadLetters/classify.js';

const body = Buffer.from('<MsgHead/>');

describe('dead letter classification', () => {
  it('a rejection by the gateway keeps its 8221 code, reason, stage, source queue and attempts', () => {
    const f = classifyDeadLetter(
      {
        'msg-id': 'm-1',
        'msg-type': 'LOG_INNLAGT',
        'x-error-code': 'T02',
        'x-error-reason': 'The message is not valid against its XSD.',
        'x-stage': 'validate',
        'x-source-queue': 'epj.outbound',
        'x-first-failed-at': '2026-11-23T08:00:00.000Z',
        'x-attempts': '1',
        'x-bydel': '030105',
      },
      'outbox-uuid',
      body,
    );
    expect(f).to.include({
      origin: 'gateway',
      code: 'T02',
      stage: 'validate',
      sourceQueue: 'epj.outbound',
      msgId: 'm-1',
      msgType: 'LOG_INNLAGT',
      attempts: 1,
      bydel: '030105',
    });
  });

  it('a message the broker dead-lettered at the delivery limit gets GW-DELIVERY-LIMIT and its queue from x-first-death-queue', () => {
    const f = classifyDeadLetter(
      {
        'x-first-death-queue': 'epj.outbound',
        'x-first-death-reason': 'delivery_limit',
        'x-death': [
          {
            queue: 'epj.outbound',
            reason: 'delivery_limit',
            count: 1,
            time: { '!': 'timestamp', value: 1795420800 },
            exchange: '',
            'routing-keys': ['epj.outbound'],
          },
        ],
      },
      undefined,
      body,
    );
    expect(f).to.include({ origin: 'broker', code: 'GW-DELIVERY-LIMIT', sourceQueue: 'epj.outbound', attempts: 1, firstFailedAt: '2026-11-23T08:00:00.000Z' });
    expect(f.reason).to.match(/^RabbitMQ dead-lettered it from epj\.outbound because it exceeded the delivery limit/);
    expect(f.headers['x-death']).to.be.an('array');
  });

  it('a message of unknown origin is still recorded, with no queue to replay to', () => {
    const f = classifyDeadLetter({ 'x-bydel': 'Storgata 1' }, 'abc', body);
    expect(f).to.include({ origin: 'unknown', code: 'GW-UNKNOWN-DEAD-LETTER', sourceQueue: null, bydel: null });
  });

  it('the same delivery seen twice has one dedupe key; a second death of the same message another', () => {
    const death = (count: number) => ({ 'x-death': [{ queue: 'q', reason: 'delivery_limit', count }] });
    const a = classifyDeadLetter(death(1), 'id-1', body).dedupeKey;
    expect(classifyDeadLetter(death(1), 'id-1', body).dedupeKey).to.equal(a);
    expect(classifyDeadLetter(death(2), 'id-1', body).dedupeKey).not.to.equal(a);
  });

  it('a replay carries the original headers without failure and broker bookkeeping', () => {
    const kept = replayHeaders({
      'msg-id': 'm',
      'x-bydel': '030101',
      'x-error-code': 'T02',
      'x-stage': 'parse',
      'x-death': [],
      'x-first-death-queue': 'q',
      'x-delivery-count': 3,
      'x-replay-of': '4',
    });
    expect(kept).to.deep.equal({ 'msg-id': 'm', 'x-bydel': '030101' });
  });
});
