// Waiting in tests: one poller, so that every wait has a deadline and says what it waited for.
// Time is measured on the monotonic clock: a test that fakes Date (sinon) still times out.

/** A probe answers `undefined` or `false` while the condition does not hold yet. */
export type Probe<T> = () => T | undefined | false | Promise<T | undefined | false>;

export class PollTimeout extends Error {
  override name = 'PollTimeout';
}

/**
 * Calls `probe` until it answers something other than `undefined` or `false`, and returns that.
 * After `timeoutMs` it throws a `PollTimeout` naming `what` (a function is called then, so it can
 * describe the last state seen). An error thrown by the probe ends the wait at once.
 */
export async function eventually<T>(what: string | (() => string), probe: Probe<T>, timeoutMs = 15_000, intervalMs = 25): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (performance.now() > deadline) {
      throw new PollTimeout(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    }
    await sleep(intervalMs);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
