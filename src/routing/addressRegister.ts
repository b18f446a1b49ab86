// A local snapshot of Adresseregisteret (DESIGN §4.5): the register is a replicated dataset,
// not a per-message lookup (LESSONS §9.7).
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { isoDay, isValidOn } from './validity.js';

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
  signingCertificate: z.string().optional(),
  /** during a rollover: certificates the party signed with before `signingCertificate`, still accepted while valid */
  previousSigningCertificates: z.array(z.string()).optional(),
  encryptionCertificate: z.string().optional(),
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
