// Stable event ids (README "Event catalogue"): alert rules match these, never message text.
export const EVENTS = {
  stagePassed: 'GW-1000',
  delivered: 'GW-1001',
  held: 'GW-1002',
  duplicate: 'GW-1003',
  rejected: 'GW-1101',
  transientRetry: 'GW-1201',
  transientGiveUp: 'GW-1202',
  outboxPublished: 'GW-1301',
  outboxDeferred: 'GW-1302',
  brokerConnected: 'GW-2001',
  brokerDisconnected: 'GW-2002',
  started: 'GW-2100',
  stopped: 'GW-2101',
  alertUnroutable: 'GW-4001',
} as const;

export type EventId = (typeof EVENTS)[keyof typeof EVENTS];
