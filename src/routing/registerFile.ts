// The address register snapshot file, read again when it changes (modification time or size), so
// that a certificate or service ops add reaches the running gateway without a restart. A file
// that no longer reads leaves the register as it was, with one warning.
import { readFileSync, statSync } from 'node:fs';
import { EVENTS } from '../observability/events.js';
import type { Logger } from '../observability/log.js';
import { AddressRegister } from './addressRegister.js';

export class RegisterFile {
  private seen: string;

  constructor(
    private readonly file: string,
    private readonly register: AddressRegister,
    private readonly log: Logger,
  ) {
    this.seen = this.stamp();
  }

  /** True when the file had changed and its parties now serve. */
  refresh(): boolean {
    const stamp = this.stamp();
    if (stamp === this.seen) return false;
    this.seen = stamp;
    try {
      const parties = AddressRegister.partiesOf(readFileSync(this.file, 'utf8'));
      this.register.replace(parties);
      this.log.info({ event: EVENTS.registerReloaded, parties: parties.length }, 'address register snapshot read again');
      return true;
    } catch (e) {
      const reason = e instanceof SyntaxError ? `not JSON (${e.message})` : 'not a valid snapshot (DESIGN §4.5)';
      this.log.warn({ event: EVENTS.registerReloadFailed, reason }, 'address register snapshot changed but cannot be read: the previous one still serves');
      return false;
    }
  }

  private stamp(): string {
    try {
      const s = statSync(this.file);
      return `${s.mtimeMs}:${s.size}`;
    } catch {
      return 'missing';
    }
  }
}
