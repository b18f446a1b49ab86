// The ops side of a running gateway, wired in one place: the DLQ recorder, the ops alert checks,
// payload retention, the release of messages held for a receiver certificate, metrics, and the HTTP API's operations. The gateway starts it before its
// consumers (metrics must exist when the first delivery is handled) and stops it first.
import type { Broker } from '../broker/connection.js';
import { type Consumer, consume } from '../broker/consumer.js';
import type { Publisher } from '../broker/publisher.js';
import { durationMs, type GatewayConfig } from '../config/config.js';
import type { SigningMaterial } from '../flows/packageDelivery.js';
import { EVENTS } from '../observability/events.js';
import type { Logger } from '../observability/log.js';
import { Metrics } from '../observability/metrics.js';
import type { Agreements } from '../outbound/agreements/agreements.js';
import type { RevocationChecker } from '../outbound/revocation.js';
import type { OutboxPublisher } from '../outbox/relay.js';
import type { LiveRegister } from '../routing/ar/liveRegister.js';
import type { RoutingContext } from '../routing/route.js';
import { logFailure, Periodic } from '../shared/periodic.js';
import { workingCalendar } from '../tracking/deadlines.js';
import type { Store } from '../tracking/store.js';
import { type ApiDeps, apiHandler } from './api.js';
import { Authenticator } from './auth.js';
import { certificateExpiryConditions } from './certificateExpiry.js';
import { consoleHandler } from './console/console.js';
import { DeadLetterRecorder } from './deadLetters/recorder.js';
import { DeadLetterRepository } from './deadLetters/repository.js';
import { DeadLetterService, REPLAY_OF, REPLAY_SKIP_DEDUPE } from './deadLetters/service.js';
import type { HttpExtras } from './http.js';
import { releaseCertificateHolds, releaseHeldMessage, resendDelivered, routeHeldMessage } from './manualRoute.js';
import { addressRegisterCondition, applyCondition, cppaCondition, crlCondition, OpsChecker } from './opsAlerts.js';
import { PayloadRetention } from './retention.js';
import { opsSnapshot } from './snapshot.js';
import { UserStore } from './users.js';

export interface OpsRuntimeDeps {
  config: GatewayConfig;
  log: Logger;
  store: Store;
  broker: Broker;
  publisher: Publisher;
  outbox: OutboxPublisher;
  routing: RoutingContext;
  live: LiveRegister;
  agreements: Agreements;
  revocation: RevocationChecker;
  signing: SigningMaterial;
}

export class OpsRuntime {
  readonly metrics: Metrics;
  readonly http: HttpExtras;
  private readonly deadLetters: DeadLetterRepository;
  private readonly checks: Periodic;
  private readonly retention: Periodic;
  private readonly registerRound: Periodic;
  private readonly certificates: Periodic;
  private dlqConsumer?: Consumer;

  constructor(private readonly deps: OpsRuntimeDeps) {
    const { config, log, store, broker, publisher, outbox } = deps;
    this.deadLetters = new DeadLetterRepository(store.db);
    this.metrics = new Metrics(() => opsSnapshot(store.db, new Date()));
    const holdDeps = { config, store, routing: deps.routing, signing: deps.signing, agreements: deps.agreements, revocation: deps.revocation, outbox, log };
    const service = new DeadLetterService(this.deadLetters, log, (exchange, key, body, o) => publisher.publish(exchange, key, body, o));
    const auth = new Authenticator({ users: new UserStore(store.db), breakGlassToken: config.apiToken, log });
    const route: ApiDeps['route'] = (msgId, bydel, by, o) =>
      this.metrics.track('out', () => (o?.resend ? resendDelivered(msgId, bydel, by, holdDeps) : routeHeldMessage(msgId, bydel, by, holdDeps)));
    const release: ApiDeps['release'] = (msgId, by) => this.metrics.track('out', () => releaseHeldMessage(msgId, by, holdDeps));
    this.http = {
      metrics: () => this.metrics.text(),
      api: apiHandler({ auth, log, deadLetters: service, route, release }),
      console: consoleHandler({
        auth,
        log,
        store,
        deadLetters: service,
        route,
        release,
        queues: () => this.metrics.queues(),
        timeZone: config.tracking.workingTime.timeZone,
        secureCookie: config.http.tls !== undefined,
        calendar: workingCalendar(config),
        bydelOfHerId: (herId) => deps.routing.register.get(herId)?.bydel ?? undefined,
      }),
    };
    // The register round: the snapshot file, AR's answers and the CPAs brought up to date, the
    // registers' availability alerted on, and messages held for a receiver certificate sent once the register has one.
    this.registerRound = new Periodic(
      durationMs(config.addressRegister.checkInterval),
      async () => {
        await deps.live.refreshDue();
        await applyCondition({ config, store, outbox, log }, addressRegisterCondition(deps.live.availability()), new Date());
        await deps.agreements.refreshDue();
        await applyCondition({ config, store, outbox, log }, cppaCondition(deps.agreements.availability()), new Date());
        await applyCondition({ config, store, outbox, log }, crlCondition(deps.revocation.unavailable(), config.trust.crl.mode), new Date());
        const { released, stillHeld } = await releaseCertificateHolds(holdDeps);
        if (released > 0) log.info({ event: EVENTS.releasedFromHold, released, stillHeld }, 'held messages released: their receivers have usable certificates');
      },
      logFailure(log, EVENTS.opsCheckFailed, 'register round'),
    );
    this.certificates = new Periodic(
      durationMs(config.ops.certificateCheckInterval),
      async () => {
        const now = new Date();
        for (const c of await certificateExpiryConditions(config, store, deps.routing.register, now))
          await applyCondition({ config, store, outbox, log }, c, now);
      },
      logFailure(log, EVENTS.opsCheckFailed, 'certificate expiry check'),
    );
    const checker = new OpsChecker({
      config,
      store,
      deadLetters: this.deadLetters,
      broker,
      outbox,
      calendar: workingCalendar(config),
      metrics: this.metrics,
      log,
    });
    this.checks = new Periodic(durationMs(config.ops.checkInterval), () => checker.checkOnce(), logFailure(log, EVENTS.opsCheckFailed, 'ops check'));
    const retention = new PayloadRetention(store.db, config.retention.payloadDays, log);
    this.retention = new Periodic(
      durationMs(config.retention.interval),
      async () => void (await retention.runOnce()),
      logFailure(log, EVENTS.opsCheckFailed, 'payload retention'),
    );
  }

  async start(): Promise<void> {
    const { config, broker, log } = this.deps;
    if (config.ops.recordDeadLetters) {
      const recorder = new DeadLetterRecorder({
        repo: this.deadLetters,
        log,
        maxMessageBytes: config.limits.maxMessageBytes,
        retryDelayMs: durationMs(config.retry.initialDelay),
      });
      this.dlqConsumer = await consume(broker, config.broker.queues.dlq, (d) => recorder.handle(d));
    }
    this.checks.start(0);
    this.retention.start(0);
    this.registerRound.start(0);
    this.certificates.start(0);
  }

  /**
   * The dead letter a replay may bypass the flow's MsgId dedupe for: only one that ops granted
   * (`dlq replay --skip-dedupe`); the header alone, which any sender could set, is not enough.
   */
  async skipDedupeFor(header: (name: string) => string | undefined): Promise<number | undefined> {
    if (header(REPLAY_SKIP_DEDUPE) !== 'true') return undefined;
    const replayOf = Number(header(REPLAY_OF));
    if (Number.isInteger(replayOf) && (await this.deadLetters.skipDedupeGranted(replayOf))) return replayOf;
    this.deps.log.warn(
      { event: EVENTS.dedupeSkipRefused, replayOf: Number.isInteger(replayOf) ? replayOf : undefined },
      'x-replay-skip-dedupe without a granted replay: ignored',
    );
    return undefined;
  }

  /** Stops the periodic work and the DLQ consumer, letting what runs finish. */
  async stop(): Promise<void> {
    await Promise.all([this.checks.stop(), this.retention.stop(), this.registerRound.stop(), this.certificates.stop()]);
    await this.dlqConsumer?.close();
  }
}
