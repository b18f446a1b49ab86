// One exponential backoff for every retry loop (outbox relay, webhook, broker reconnect,
// transient failures): the first retry after `initialMs`, doubling, never more than `maxMs`.

export interface Backoff {
  initialMs: number;
  maxMs: number;
}

/** The wait before retry number `failures + 1`, after `failures` failed attempts (0 → initialMs). */
export function backoffDelay(policy: Backoff, failures: number): number {
  return Math.min(policy.maxMs, policy.initialMs * 2 ** Math.max(0, failures));
}
