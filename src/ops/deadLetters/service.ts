// The dead-letter operations ops run from the CLI and the HTTP API: both call these, so the
// rules (what may be replayed, what is audited, how a batch pauses) are in one place.
import { randomUUID } from 'node:crypto';
import { EVENTS } from '../../observability/events.js';
import type { Logger } from '../../observability/log.js';
import { type Actor, fail, type OpsResult } from '../result.js';
import { type Headers, replayHeaders } from './classify.js';
import { type DeadLetterFilter, type DeadLetterRepository, type DeadLetterRow, REPLAY_PAUSED } from './repository.js';

/** Publishes with broker confirms (Publisher.publish); rejects when not confirmed. */
export type ConfirmedPublish = (
  exchange: string,
  routingKey: string,
  body: Buffer,
  opts: { messageId: string; headers: Headers; contentType?: string },
) => Promise<void>;

export interface DeadLetterView {
  row: DeadLetterRow;
  headers: Headers;
  /** only when asked for, and audited */
  payload?: { contentType: string | null; body: string } | { expired: true };
}

export interface BatchResult {
  replayed: number[];
  /** entries that can never be replayed (no source queue, payload expired): left for `discard` */
  skipped: { id: number; reason: string }[];
  /** the broker did not take a replay: the batch stops there */
  failed?: { id: number; reason: string };
  /** the pause flag was set: the rest waits for `dlq resume` and the same command again */
  paused: boolean;
  remaining: number;
}

/** The headers a replayed message carries so that the gateway can tell it from a fresh one. */
export const REPLAY_OF = 'x-replay-of';
export const REPLAY_SKIP_DEDUPE = 'x-replay-skip-dedupe';

/** A listing row: what ops need to decide, no personal data (DESIGN §4.3 headers are metadata). */
export function deadLetterSummary(r: DeadLetterRow, now: Date) {
  return {
    id: r.id,
    state: r.state,
    age: ageText(now.getTime() - Date.parse(r.received_at)),
    receivedAt: r.received_at,
    sourceQueue: r.source_queue,
    code: r.code,
    reason: r.reason,
    stage: r.stage,
    msgId: r.msg_id,
    type: r.msg_type,
    bydel: r.bydel,
    attempts: r.attempts,
    firstFailedAt: r.first_failed_at,
    ...(r.state === 'open' ? {} : { resolvedAt: r.resolved_at, resolvedBy: r.resolved_by, resolution: r.resolution_reason }),
  };
}

/** 45s, 12m, 3h, 4d: enough to see at a glance what has waited too long. */
export function ageText(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export class DeadLetterService {
  constructor(
    private readonly repo: DeadLetterRepository,
    private readonly log: Logger,
    /** absent where no broker is connected: replays then fail as unavailable */
    private readonly publish?: ConfirmedPublish,
  ) {}

  list(filter: DeadLetterFilter): Promise<DeadLetterRow[]> {
    return this.repo.list(filter);
  }

  async show(id: number, withPayload: boolean, by: Actor): Promise<OpsResult<DeadLetterView>> {
    const row = await this.repo.get(id);
    if (!row) return fail('not-found', `dead letter #${id} does not exist`);
    const view: DeadLetterView = { row, headers: JSON.parse(row.headers) };
    if (!withPayload) return { ok: true, value: view };
    // Reading a payload is itself an access to personal data: audited before it is returned.
    await this.repo.audit({
      actor: by.actor,
      action: 'dlq.show-payload',
      target: `dead-letter:${id}`,
      reason: by.reason,
      detail: { via: by.via, msgId: row.msg_id },
    });
    const body = await this.repo.body(id);
    view.payload = body ? { contentType: row.content_type, body: body.toString('utf8') } : { expired: true };
    return { ok: true, value: view };
  }

  /**
   * Republishes the original body and headers to the queue it failed on, with a broker confirm,
   * then marks it replayed (audited). At least once: a crash between the two replays it again,
   * and the flow's MsgId dedupe absorbs the copy.
   */
  async replay(id: number, by: Actor, options: { skipDedupe?: boolean; batch?: string } = {}): Promise<OpsResult<DeadLetterRow>> {
    if (!this.publish) return fail('unavailable', 'no broker connection: cannot replay');
    const row = await this.repo.prepareReplay(id, options.skipDedupe === true);
    if (!row)
      return (await this.repo.get(id)) ? fail('conflict', `dead letter #${id} is no longer open`) : fail('not-found', `dead letter #${id} does not exist`);
    if (!row.source_queue) return fail('invalid', `dead letter #${id} has no source queue to replay to; discard it instead`);
    const body = await this.repo.body(id);
    if (!body) return fail('invalid', `the payload of dead letter #${id} has expired`);

    const headers: Headers = {
      ...replayHeaders(JSON.parse(row.headers)),
      [REPLAY_OF]: String(id),
      ...(options.skipDedupe ? { [REPLAY_SKIP_DEDUPE]: 'true' } : {}),
    };
    try {
      await this.publish('', row.source_queue, body, { messageId: row.amqp_message_id ?? randomUUID(), headers, contentType: row.content_type ?? undefined });
    } catch (e) {
      return fail('unavailable', `the broker did not confirm the replay to ${row.source_queue}: ${(e as Error).message}`);
    }
    const detail = {
      via: by.via,
      msgId: row.msg_id,
      code: row.code,
      sourceQueue: row.source_queue,
      skipDedupe: options.skipDedupe === true,
      ...(options.batch ? { batch: options.batch } : {}),
    };
    await this.repo.resolve(id, 'replayed', { actor: by.actor, action: 'dlq.replay', target: `dead-letter:${id}`, reason: by.reason, detail });
    this.log.info(
      {
        event: EVENTS.deadLetterReplayed,
        deadLetterId: id,
        msgId: row.msg_id ?? undefined,
        code: row.code,
        sourceQueue: row.source_queue,
        skipDedupe: options.skipDedupe === true,
      },
      `dead letter #${id} replayed to ${row.source_queue}`,
    );
    return { ok: true, value: { ...row, state: 'replayed' } };
  }

  /** Replays every open dead letter that matches, one by one, checking the pause flag before each. */
  async replayBatch(filter: Pick<DeadLetterFilter, 'code' | 'sourceQueue' | 'limit'>, by: Actor, options: { skipDedupe?: boolean } = {}): Promise<BatchResult> {
    const batch = randomUUID();
    const ids = (await this.repo.list({ ...filter, state: 'open' })).map((r) => r.id);
    const result: BatchResult = { replayed: [], skipped: [], paused: false, remaining: ids.length };
    for (const id of ids) {
      if (await this.repo.flag(REPLAY_PAUSED)) {
        result.paused = true;
        this.log.warn({ event: EVENTS.replayPaused, batch, replayed: result.replayed.length, remaining: result.remaining }, 'batch replay paused');
        break;
      }
      const r = await this.replay(id, by, { ...options, batch });
      if (!r.ok && r.status === 'unavailable') {
        result.failed = { id, reason: r.reason };
        break;
      }
      result.remaining--;
      if (r.ok) result.replayed.push(id);
      // one someone else resolved meanwhile (conflict) is no longer this batch's business
      else if (r.status === 'invalid') result.skipped.push({ id, reason: r.reason });
    }
    return result;
  }

  async discard(id: number, by: Actor & { reason: string }): Promise<OpsResult<DeadLetterRow>> {
    const row = await this.repo.get(id);
    if (!row) return fail('not-found', `dead letter #${id} does not exist`);
    const done = await this.repo.resolve(id, 'discarded', {
      actor: by.actor,
      action: 'dlq.discard',
      target: `dead-letter:${id}`,
      reason: by.reason,
      detail: { via: by.via, msgId: row.msg_id, code: row.code },
    });
    if (!done) return fail('conflict', `dead letter #${id} is no longer open`);
    this.log.info({ event: EVENTS.deadLetterDiscarded, deadLetterId: id, msgId: row.msg_id ?? undefined, code: row.code }, `dead letter #${id} discarded`);
    return { ok: true, value: { ...row, state: 'discarded' } };
  }

  /** Batch replays (here or in another process) stop before their next item until resumed. */
  async pause(by: Actor): Promise<void> {
    await this.repo.setFlag(REPLAY_PAUSED, new Date().toISOString(), { actor: by.actor, action: 'dlq.pause', reason: by.reason, detail: { via: by.via } });
  }

  async resume(by: Actor): Promise<void> {
    await this.repo.setFlag(REPLAY_PAUSED, undefined, { actor: by.actor, action: 'dlq.resume', reason: by.reason, detail: { via: by.via } });
  }

  async paused(): Promise<boolean> {
    return (await this.repo.flag(REPLAY_PAUSED)) !== undefined;
  }
}
