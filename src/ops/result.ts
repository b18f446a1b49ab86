// What an ops operation returns to the CLI and the HTTP API alike: a value, or a failure whose
// status each front end maps to its own signal (exit code 1, HTTP 404/409/503/400).

/** Who acts and why; `via` tells the CLI from the API in the audit trail. */
export interface Actor {
  actor: string;
  via: 'cli' | 'api' | 'console';
  reason?: string;
}

export type OpsFailure = { ok: false; status: 'not-found' | 'conflict' | 'unavailable' | 'invalid'; reason: string };
export type OpsResult<T> = { ok: true; value: T } | OpsFailure;

export const fail = (status: OpsFailure['status'], reason: string): OpsFailure => ({ ok: false, status, reason });
