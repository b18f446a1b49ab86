// `plo-gateway route <msgId> --bydel <code>`: send a held message to the bydel ops decided on
// (with `--resend`: a delivered message the bydel said was not theirs, to the right one);
// `plo-gateway release <msgId>`: try a message held for its receiver's encryption certificate
// again now, with the address register as it is on disk. Either is signed, encrypted and
// delivered like any routed message; audited.
import { readFileSync } from 'node:fs';
import { type Command, InvalidArgumentError } from 'commander';
import { Publisher } from '../../broker/publisher.js';
import { durationMs } from '../../config/config.js';
import { trustStoreFor } from '../../outbound/certificates.js';
import { RevocationChecker } from '../../outbound/revocation.js';
import { OutboxPublisher, relayPolicy } from '../../outbox/relay.js';
import { LiveRegister } from '../../routing/ar/liveRegister.js';
import { isBydelCode } from '../../routing/bydeler.js';
import { loadRouting } from '../../routing/load.js';
import { type ManualRouteDeps, type Routed, releaseHeldMessage, resendDelivered, routeHeldMessage } from '../manualRoute.js';
import type { Actor, OpsResult } from '../result.js';
import { actorName, connectBroker, failed, type OpsContext, printJson, withStore } from './opsContext.js';

const bydelCode = (v: string) => {
  if (!isBydelCode(v)) throw new InvalidArgumentError('must be a bydel code 030101–030117');
  return v;
};

interface ActOptions {
  reason?: string;
  actor?: string;
  json?: boolean;
}

interface RouteOptions extends ActOptions {
  bydel: string;
  resend?: boolean;
}

export function registerRouteCommands(program: Command): void {
  program
    .command('route')
    .description(
      'route a held message to a bydel: signed, encrypted and delivered like any routed message; with --resend, send a delivered one to another bydel (audited)',
    )
    .argument('<msgId>', 'MsgId of the held (or, with --resend, delivered) message')
    .requiredOption('--bydel <code>', 'the bydel (030101–030117) responsible for the patient', bydelCode)
    .option('--resend', 'the message was delivered to the wrong bydel (feil adressat): send it again, under a new ebXML MessageId, to this one')
    .option('--reason <text>', 'why this bydel (audited; no personal data)')
    .option('--actor <name>', 'who acts, for the audit trail (default: the OS user)')
    .option('--json', 'machine-readable output')
    .action((msgId: string, o: RouteOptions) =>
      withStore((ctx) =>
        o.resend
          ? act(ctx, o, `sent again to bydel ${o.bydel}`, (by, deps) => resendDelivered(msgId, o.bydel, by, deps))
          : act(ctx, o, `routed to bydel ${o.bydel}`, (by, deps) => routeHeldMessage(msgId, o.bydel, by, deps)),
      ),
    );
  program
    .command('release')
    .description("send a message held for its receiver's encryption certificate, now that the address register file has one (audited)")
    .argument('<msgId>', 'MsgId of the held message')
    .option('--reason <text>', 'why now (audited; no personal data)')
    .option('--actor <name>', 'who acts, for the audit trail (default: the OS user)')
    .option('--json', 'machine-readable output')
    .action((msgId: string, o: ActOptions) => withStore((ctx) => act(ctx, o, 'released', (by, deps) => releaseHeldMessage(msgId, by, deps))));
}

async function act(ctx: OpsContext, o: ActOptions, done: string, operation: (by: Actor, deps: ManualRouteDeps) => Promise<OpsResult<Routed>>): Promise<void> {
  const { config, store, log } = ctx;
  const routing = loadRouting(config);
  // what AR answered (cached by the running gateway) counts here as it does there
  await new LiveRegister({ config, db: store.db, register: routing.register, log }).sync();
  const signing = { keyPem: readFileSync(config.signing.keyFile, 'utf8'), certPem: readFileSync(config.signing.certFile, 'utf8') };
  // the CRLs the running gateway cached serve here too: a revoked receiver certificate is not encrypted to
  const revocation = new RevocationChecker(trustStoreFor(config.trust), durationMs(config.trust.crl.timeout), { db: store.db });
  // Without a broker the delivery is still stored: a running gateway's outbox relay sends it.
  const broker = await connectBroker(config, log);
  const publisher = broker && new Publisher(broker);
  await publisher?.start();
  try {
    const outbox =
      publisher &&
      new OutboxPublisher(
        store,
        (exchange, key, body, p) => publisher.publish(exchange, key, body, { ...p, messageId: p.messageId ?? '' }),
        log,
        relayPolicy(config),
      );
    const r = await operation({ actor: actorName(o.actor), via: 'cli', reason: o.reason }, { config, store, routing, signing, revocation, outbox, log });
    if (!r.ok) return failed(r, o.json === true);
    if (o.json) return printJson(r.value);
    console.log(`${r.value.msgId} ${done} (HER-id ${r.value.toHerId})`);
    if (!r.value.published) console.error('not yet published: stored in the outbox, which the running gateway relays');
  } finally {
    await publisher?.close();
    await broker?.close();
  }
}
