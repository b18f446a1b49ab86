// `plo-gateway register show|refresh|export` (DESIGN §4.6): the address register as the gateway
// sees it — the snapshot with NHN's Adresseregister on top — read, refreshed, or written out as a
// snapshot file. Exit codes: 0 ok, 1 not found / AR not configured or not answering, 2 usage.
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { Agreements } from '../../outbound/agreements/agreements.js';
import { CppaUnavailable } from '../../outbound/agreements/client.js';
import type { Agreement } from '../../outbound/agreements/cpa.js';
import { checkSigningCertificate, describeCertificate, trustStoreFor } from '../../outbound/certificates.js';
import { encryptionCertificateProblem } from '../../outbound/cms.js';
import type { CommunicationParty } from '../../routing/addressRegister.js';
import { ArUnavailable } from '../../routing/ar/client.js';
import { LiveRegister } from '../../routing/ar/liveRegister.js';
import { loadRouting } from '../../routing/load.js';
import { fail } from '../result.js';
import { failed, type OpsContext, printJson, withStore } from './opsContext.js';

const NOT_CONFIGURED = fail('unavailable', 'no address register is configured (GATEWAY_ADDRESS_REGISTER_URL): only the snapshot serves');

async function liveRegister(ctx: OpsContext): Promise<LiveRegister> {
  const live = new LiveRegister({ config: ctx.config, db: ctx.store.db, register: loadRouting(ctx.config).register, log: ctx.log });
  await live.sync();
  return live;
}

/** AR not answering is one readable line and exit code 1; anything else is a bug and is thrown. */
async function orUnavailable(json: boolean, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (e) {
    if (!(e instanceof ArUnavailable)) throw e;
    failed(fail('unavailable', e.message), json);
  }
}

export function registerRegisterCommands(program: Command): void {
  const register = program.command('register').description('the address register: the snapshot with NHN Adresseregisteret (AR) on top');
  register
    .command('show <herId>')
    .description('a party as the gateway sees it now (asked of AR when configured): services, certificates with validity and key usage')
    .option('--from <herId>', 'our side of the CPA shown (default: ownHerId)')
    .option('--json', 'machine-readable output')
    .action((herId: string, o: { json?: boolean; from?: string }) => withStore((ctx) => show(ctx, herId, o.from ?? ctx.config.ownHerId, o.json === true)));
  register
    .command('refresh [herId]')
    .description('ask AR again now, whatever is cached: one party, or every bydel organisation and cached party')
    .option('--json', 'machine-readable output')
    .action((herId: string | undefined, o: { json?: boolean }) =>
      withStore(async (ctx) => {
        const live = await liveRegister(ctx);
        if (!live.client) return failed(NOT_CONFIGURED, o.json === true);
        await orUnavailable(o.json === true, async () => {
          const answered = herId ? await live.refresh([herId]) : await live.refreshAll();
          if (o.json) return printJson({ refreshed: answered });
          console.log(`refreshed from AR: ${answered.length} part${answered.length === 1 ? 'y' : 'ies'}${herId ? ` (${herId})` : ''}`);
        });
      }),
    );
  register
    .command('export')
    .description("write a snapshot in today's format (DESIGN §4.5) from what AR answers now: the bydel organisations and their services")
    .requiredOption('--municipality <code>', 'kommunenummer, e.g. 0301')
    .requiredOption('--out <file>', 'where to write the snapshot')
    .option('--json', 'machine-readable output')
    .action((o: { municipality: string; out: string; json?: boolean }) =>
      withStore(async (ctx) => {
        const live = await liveRegister(ctx);
        if (!live.client) return failed(NOT_CONFIGURED, o.json === true);
        await orUnavailable(o.json === true, async () => {
          const parties = await live.exportSnapshot(o.municipality);
          writeFileSync(o.out, `${JSON.stringify(parties, null, 2)}\n`);
          const services = parties.filter((p) => p.type === 'Service').length;
          if (o.json) return printJson({ out: o.out, parties: parties.length, services });
          console.log(`wrote ${o.out}: ${parties.length} parties (${services} services) of municipality ${o.municipality}`);
        });
      }),
    );
}

async function show(ctx: OpsContext, herId: string, ours: string, json: boolean): Promise<void> {
  const live = await liveRegister(ctx);
  const notes: string[] = [];
  if (live.client) {
    try {
      await live.refresh([herId]);
    } catch (e) {
      if (!(e instanceof ArUnavailable)) throw e;
      notes.push(`AR does not answer (${e.message}): showing what is cached or in the snapshot`);
    }
  }
  const agreement = await agreementWith(ctx, ours, herId, notes);
  const party = live.register.get(herId);
  const source = live.sourceOf(herId);
  if (!party) {
    const why = source?.from === 'ar' ? 'AR has no party with this HER-id' : 'neither AR nor the snapshot knows this HER-id';
    return failed(fail('not-found', `${herId}: ${why}`), json);
  }
  const now = new Date();
  const trust = trustStoreFor(ctx.config.trust);
  const services = live.register.parties.filter((p) => p.parentHerId === herId);
  const describeSigning = (pem: string) => ({ ...describeCertificate(pem), problems: checkSigningCertificate(pem, now, trust).problems });
  const describeEncryption = (pem: string) => ({ ...describeCertificate(pem), problems: [encryptionCertificateProblem(pem, now, trust)].filter(Boolean) });
  // the encryption certificate is the one a message sent now is encrypted to; during a rollover the others AR lists follow
  const encryptingTo = live.register.encryptionCertificateFor(herId, now);
  const otherEncryption = [...new Set([party.encryptionCertificate, ...(party.encryptionCertificates ?? [])])].filter(
    (pem): pem is string => pem !== undefined && pem !== encryptingTo,
  );
  const certificates = {
    signing: party.signingCertificate ? describeSigning(party.signingCertificate) : null,
    previousSigning: (party.previousSigningCertificates ?? []).map(describeSigning),
    encryption: encryptingTo ? describeEncryption(encryptingTo) : null,
    otherEncryption: otherEncryption.map(describeEncryption),
  };
  const withoutCertificates = ({
    signingCertificate: _s,
    previousSigningCertificates: _p,
    encryptionCertificate: _e,
    encryptionCertificates: _es,
    ...rest
  }: CommunicationParty) => rest;
  const facts = withoutCertificates(party);
  const note = notes.length > 0 ? notes.join('; ') : undefined;
  if (json) return printJson({ party: facts, source, services: services.map(withoutCertificates), certificates, agreement, note });
  for (const n of notes) console.error(n);
  console.log(`${party.herId}  ${party.name}  (${party.type}${party.active ? '' : ', INACTIVE'})`);
  console.log(
    `  from            ${source?.from === 'ar' ? `AR, fetched ${source.fetchedAt.toISOString()}, serves until ${source.expiresAt.toISOString()}` : 'the snapshot'}`,
  );
  for (const [label, value] of [
    ['parent', party.parentHerId],
    ['municipality', party.municipality],
    ['bydel', party.bydel],
    ['service code', party.serviceCode],
    ['valid', party.validFrom || party.validTo ? `${party.validFrom ?? '…'} – ${party.validTo ?? '…'}` : undefined],
    ['EDI address', live.register.ediAddressFor(herId, now)],
    // announced by AR, not in effect yet: a transport sending by EDI mailbox switches on that date
    ...(party.futureEdiAddresses ?? []).filter((f) => Date.parse(f.validFrom) > now.getTime()).map((f) => [`EDI from ${f.validFrom}`, f.address] as const),
  ] as const) {
    if (value) console.log(`  ${label.padEnd(15)} ${value}`);
  }
  const printCertificate = (label: string, c: (typeof certificates.otherEncryption)[number]) => {
    console.log(`  ${label}: ${c.subject} (issuer ${c.issuer}, serial ${c.serialNumber})`);
    console.log(
      `    valid ${c.validFrom} – ${c.validTo}; key usage ${c.keyUsage?.join(', ') ?? '(none)'}${c.problems.length ? `; NOT USABLE: ${c.problems.join('; ')}` : ''}`,
    );
  };
  if (certificates.signing) printCertificate('signing certificate', certificates.signing);
  else console.log('  signing certificate: none');
  for (const c of certificates.previousSigning) printCertificate('also accepted for signatures', c);
  if (certificates.encryption) printCertificate('encryption certificate', certificates.encryption);
  else console.log('  encryption certificate: none');
  for (const c of certificates.otherEncryption) printCertificate('also listed for encryption', c);
  printAgreement(agreement);
  for (const s of services) console.log(`  service ${s.herId}  ${s.name}  ${s.serviceCode ?? ''}${s.active ? '' : '  INACTIVE'}`);
}

interface ShownAgreement {
  ours: string;
  /** cppa.url not set: HIS 1037's defaults for every partner */
  configured: boolean;
  agreement?: Agreement;
  /** the agreement's period includes now */
  inForce?: boolean;
}

/** The CPA between `ours` and the party, asked of the CPPA register now (what is cached when it does not answer). */
async function agreementWith(ctx: OpsContext, ours: string, partner: string, notes: string[]): Promise<ShownAgreement> {
  const agreements = new Agreements({ config: ctx.config, db: ctx.store.db, log: ctx.log });
  if (!agreements.client) return { ours, configured: false };
  await agreements.sync();
  try {
    await agreements.refresh(ours, partner);
  } catch (e) {
    if (!(e instanceof CppaUnavailable)) throw e;
    notes.push(`the CPPA register does not answer (${e.message}): showing the cached agreement`);
  }
  const agreement = agreements.agreementOf(ours, partner);
  if (!agreement) return { ours, configured: true };
  const now = Date.now();
  const inForce = (!agreement.start || Date.parse(agreement.start) <= now) && (!agreement.end || Date.parse(agreement.end) >= now);
  return { ours, configured: true, agreement, inForce };
}

function printAgreement(shown: ShownAgreement): void {
  const { agreement } = shown;
  if (!shown.configured) {
    console.log('  agreement       none asked for (no CPPA register configured): HIS 1037 defaults');
    return;
  }
  if (!agreement) {
    console.log(`  agreement       none with ${shown.ours} in the CPPA register: HIS 1037 defaults`);
    return;
  }
  const period = `${agreement.start ?? '…'} – ${agreement.end ?? '…'}`;
  console.log(
    `  agreement       CPA ${agreement.cpaId} with ${shown.ours}, ${agreement.status}, ${period}${shown.inForce ? '' : ' (NOT IN FORCE: HIS 1037 defaults)'}`,
  );
  for (const [key, t] of Object.entries(agreement.sends)) {
    const [service, action] = key.split('|');
    const retries = t.retries === undefined ? '' : `, ${t.retries} retries${t.retryInterval ? ` every ${t.retryInterval}` : ''}`;
    console.log(
      `    we send ${service} / ${action}: ${t.signatureAlgorithm}, ${t.ackRequested ? 'Acknowledgment requested' : 'no Acknowledgment'}${retries}, payload ${t.encrypted ? 'encrypted' : 'in clear'}`,
    );
  }
}
