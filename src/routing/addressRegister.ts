// A local snapshot of Adresseregisteret (DESIGN §4.5): the register is a replicated dataset,
// not a per-message lookup (LESSONS §9.7).
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { keyUsageOf, readCertificate } from '../outbound/certificates.js';
import { isoDay, isValidOn } from './validity.js';

/** An EDI mailbox AR announces ahead (FutureElectronicAddress): it replaces `ediAddress` from `validFrom` on. */
const futureEdiAddressSchema = z.object({
  address: z.string().min(1),
  validFrom: z.iso.datetime({ offset: true, error: 'must be a date-time with its zone, e.g. 2026-09-01T00:00:00+02:00' }),
});

const partySchema = z.object({
  herId: z.union([z.number().int(), z.string().regex(/^\d+$/)]).transform(String),
  name: z.string().min(1),
  /** AR's party types the gateway addresses; routing sends to Services */
  type: z.enum(['Organization', 'Service', 'Department', 'Person']),
  parentHerId: z
    .union([z.number().int(), z.string().regex(/^\d+$/)])
    .transform(String)
    .optional(),
  municipality: z.string().optional(),
  bydel: z.string().optional(),
  serviceCode: z.string().optional(),
  active: z.boolean(),
  ebxml: z.object({ cpaId: z.string().optional() }).optional(),
  /** the party's E_EDI electronic address (DESIGN §4.7): its EDI mailbox */
  ediAddress: z.string().optional(),
  futureEdiAddresses: z.array(futureEdiAddressSchema).optional(),
  signingCertificate: z.string().optional(),
  /** during a rollover: other certificates its signatures are accepted with, those AR lists beside `signingCertificate` and those it signed with before */
  previousSigningCertificates: z.array(z.string()).optional(),
  encryptionCertificate: z.string().optional(),
  /** during a rollover: every encryption certificate AR lists for the party; `encryptionCertificateFor` picks one */
  encryptionCertificates: z.array(z.string()).optional(),
  /** a bydel's receiving service can change on a given day (the 2028 bydel reform): first day valid */
  validFrom: isoDay.optional(),
  /** first day no longer valid */
  validTo: isoDay.optional(),
});

export type CommunicationParty = z.infer<typeof partySchema>;

export class AddressRegister {
  private byHerId = new Map<string, CommunicationParty>();
  private current: CommunicationParty[] = [];

  constructor(parties: CommunicationParty[]) {
    this.replace(parties);
  }

  static parse(json: string): AddressRegister {
    return new AddressRegister(AddressRegister.partiesOf(json));
  }

  static load(file: string): AddressRegister {
    return AddressRegister.parse(readFileSync(file, 'utf8'));
  }

  static partiesOf(json: string): CommunicationParty[] {
    return z.array(partySchema).parse(JSON.parse(json));
  }

  get parties(): readonly CommunicationParty[] {
    return this.current;
  }

  /** A newer snapshot, in place: every holder of this register sees it at once. */
  replace(parties: CommunicationParty[]): void {
    this.current = parties;
    this.byHerId = new Map(parties.map((p) => [p.herId, p]));
  }

  get(herId: string): CommunicationParty | undefined {
    return this.byHerId.get(herId);
  }

  /** The party's EDI mailbox in effect at `at`: the newest announced one already valid, else `ediAddress`. */
  ediAddressFor(herId: string, at: Date): string | undefined {
    const party = this.get(herId);
    const inEffect = (party?.futureEdiAddresses ?? [])
      .filter((f) => Date.parse(f.validFrom) <= at.getTime())
      .sort((a, b) => Date.parse(b.validFrom) - Date.parse(a.validFrom));
    return inEffect[0]?.address ?? party?.ediAddress;
  }

  /**
   * The certificate to encrypt to at `at`: of those AR lists, the newest (latest notBefore) valid
   * then and made for encryption, since during a rollover the partner already reads with the new
   * key; else `encryptionCertificate`, whose problem the caller reports.
   */
  encryptionCertificateFor(herId: string, at: Date): string | undefined {
    const party = this.get(herId);
    if (!party) return undefined;
    const candidates = [...new Set([...(party.encryptionCertificates ?? []), ...(party.encryptionCertificate ? [party.encryptionCertificate] : [])])];
    const usable = candidates.flatMap((pem) => {
      const notBefore = encryptionValidityStart(pem, at);
      return notBefore === undefined ? [] : [{ pem, notBefore }];
    });
    usable.sort((a, b) => b.notBefore - a.notBefore);
    return usable[0]?.pem ?? party.encryptionCertificate;
  }

  isActive(herId: string): boolean {
    return this.get(herId)?.active === true;
  }

  /** Default "route by bydel" set: Oslo kommune's organisation(s), i.e. municipality 0301 without a bydel. */
  osloKommuneHerIds(): string[] {
    return this.parties.filter((p) => p.type === 'Organization' && p.municipality === '0301' && !p.bydel && p.active).map((p) => p.herId);
  }

  /** The active service of a bydel with a given service code (8663), with its parent organisation; with a day, only entries valid that day. */
  bydelService(bydel: string, serviceCode: string, day?: string): { service: CommunicationParty; organisation: CommunicationParty } | undefined {
    const current = (p: CommunicationParty) => p.active && (day === undefined || isValidOn(p, day));
    const service = this.parties.find((p) => p.type === 'Service' && p.bydel === bydel && p.serviceCode === serviceCode && current(p));
    const organisation = service?.parentHerId ? this.get(service.parentHerId) : undefined;
    return service && organisation && current(organisation) ? { service, organisation } : undefined;
  }
}

/** The certificate's notBefore (ms) when it is valid at `at` with keyEncipherment or dataEncipherment; else undefined. */
function encryptionValidityStart(pem: string, at: Date): number | undefined {
  let cert: ReturnType<typeof readCertificate>;
  try {
    cert = readCertificate(pem);
  } catch {
    return undefined;
  }
  const usage = keyUsageOf(cert) ?? [];
  const forEncryption = usage.includes('keyEncipherment') || usage.includes('dataEncipherment');
  return forEncryption && cert.notBefore <= at && at <= cert.notAfter ? cert.notBefore.getTime() : undefined;
}
