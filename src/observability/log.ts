// JSON logs, one line per stage outcome. Personal data is never passed to the logger; the
// redaction list is a second line of defence for fields that must never be printed.
import { type DestinationStream, type Logger, pino } from 'pino';
import { observeStage } from './metrics.js';

export type { Logger } from 'pino';

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'plo-gateway' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['patient', '*.patient', 'body', '*.body', 'payload', '*.payload', 'fnr', '*.fnr', 'businessXml', '*.businessXml'],
        censor: '[redacted]',
      },
    },
    destination,
  );
}

export interface StageLog {
  event: string;
  msgId?: string;
  type?: string;
  stage: string;
  decision: string;
  [key: string]: unknown;
}

/** The one shape every pipeline stage logs in (README: "Log events"); also counted and timed (metrics.ts). */
export function logStage(log: Logger, entry: StageLog, level: 'info' | 'warn' | 'error' = 'info'): void {
  log[level](entry, `${entry.stage}: ${entry.decision}`);
  observeStage(entry);
}
