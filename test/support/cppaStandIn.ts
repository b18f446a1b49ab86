// A stand-in for NHN's CPPA register (REST), a real HTTP server the tests start.
// `GET Agreements/HerIds/{my}/{other}` answers the official sample CPA (samples/cppa) with the
// test's terms written into it: the two parties' HER-ids, the PLO message types in place of the
// sample's two dialog services, the signature algorithm, the channel's ackRequested, Retries and
// RetryInterval, the period and the cpaid; 404 for a pair without an agreement.
// `GET Profiles/{herId}` answers the sample CPP for a party that has one. It counts what it is
// asked and can be stopped and started again on the same port (the register down).
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { HttpStandIn } from './httpStandIn.js';
import { SAMPLES } from './paths.js';

export interface StandInAgreement {
  /** the partner's HER-id: any HER-id of ours asking about it gets the agreement */
  partnerHerId: string;
  /** the message types (eb:Service S-<type>, Action <type>) it covers: one or two */
  msgTypes: string[];
  cpaId?: string;
  signatureAlgorithm?: 'rsa-sha1' | 'rsa-sha256';
  /** MessagingCharacteristics@ackRequested on every channel; absent as in the sample */
  ackRequested?: 'always' | 'never' | 'perMessage';
  retries?: number;
  retryInterval?: string;
  /** the Packaging in clear (no Encapsulation) */
  plain?: boolean;
  start?: Date;
  end?: Date;
}

export interface CppaRequest {
  path: string;
  myHerId?: string;
  otherHerId?: string;
}

const SAMPLE_CPA = readFileSync(join(SAMPLES, 'cppa', 'helsenorge-CPA_93252.xml'), 'utf8');
const SAMPLE_CPP = readFileSync(join(SAMPLES, 'cppa', 'helsenorge-CPP_93238.xml'), 'utf8');
const SAMPLE_SERVICES = ['DIALOG_INNBYGGER_DIGITALBRUKER', 'DIALOG_INNBYGGER_EKONSULTASJON'];
const SHA256 = 'tns:oid="1.2.840.113549.1.1.11" tns:w3c="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256">RSA-SHA256';

/** The sample CPA between `myHerId` (its first party, 93238) and the partner (93252), with the agreement's terms. */
export function cpaXml(myHerId: string, a: StandInAgreement): string {
  if (a.msgTypes.length < 1 || a.msgTypes.length > SAMPLE_SERVICES.length) throw new Error('one or two message types');
  let xml = SAMPLE_CPA.replace(/tns:cpaid="[^"]*"/, `tns:cpaid="${a.cpaId ?? randomUUID()}"`)
    .replace('<tns:PartyId tns:type="HER">93238</tns:PartyId>', `<tns:PartyId tns:type="HER">${myHerId}</tns:PartyId>`)
    .replace('<tns:PartyId tns:type="HER">93252</tns:PartyId>', `<tns:PartyId tns:type="HER">${a.partnerHerId}</tns:PartyId>`)
    .replace(/<tns:Start>[^<]*<\/tns:Start>/, `<tns:Start>${(a.start ?? new Date(Date.now() - 86_400_000)).toISOString()}</tns:Start>`)
    .replace(/<tns:End>[^<]*<\/tns:End>/, `<tns:End>${(a.end ?? new Date(Date.now() + 365 * 86_400_000)).toISOString()}</tns:End>`)
    .replace('<tns:Status tns:value="proposed" />', '<tns:Status tns:value="agreed" />');
  SAMPLE_SERVICES.forEach((service, i) => {
    xml = xml.replaceAll(service, a.msgTypes[i] ?? a.msgTypes[0]);
  });
  if (a.signatureAlgorithm === 'rsa-sha256')
    xml = xml
      .replaceAll('tns:oid="1.2.840.113549.1.1.5" tns:w3c="http://www.w3.org/2000/09/xmldsig#rsa-sha1">RSA-SHA1', SHA256)
      .replaceAll(
        '<tns:HashFunction>http://www.w3.org/2000/09/xmldsig#sha1</tns:HashFunction>',
        '<tns:HashFunction>http://www.w3.org/2001/04/xmlenc#sha256</tns:HashFunction>',
      );
  if (a.ackRequested) xml = xml.replaceAll('<tns:MessagingCharacteristics />', `<tns:MessagingCharacteristics tns:ackRequested="${a.ackRequested}" />`);
  if (a.retries !== undefined || a.retryInterval) {
    const interval = a.retryInterval ? `<tns:RetryInterval>${a.retryInterval}</tns:RetryInterval>` : '';
    xml = xml.replaceAll('<tns:Retries>0</tns:Retries>', `<tns:Retries>${a.retries ?? 0}</tns:Retries>${interval}`);
  }
  if (a.plain) xml = xml.replace(/<tns:Encapsulation [^>]*>\s*(<tns:Constituent [^>]*\/>)\s*<\/tns:Encapsulation>/g, '$1');
  return xml;
}

export class CppaStandIn extends HttpStandIn {
  readonly agreements = new Map<string, StandInAgreement>();
  /** HER-ids with a CPP */
  readonly profiles = new Set<string>();
  readonly requests: CppaRequest[] = [];
  /** the HTTP status to answer everything with instead (a register in trouble) */
  failWith?: number;

  static async start(agreements: StandInAgreement[] = []): Promise<CppaStandIn> {
    const cppa = new CppaStandIn();
    for (const a of agreements) cppa.agree(a);
    await cppa.listen();
    return cppa;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/api/v1`;
  }

  agree(a: StandInAgreement): void {
    this.agreements.set(a.partnerHerId, { ...a, cpaId: a.cpaId ?? randomUUID() });
  }

  /** How many agreement requests came, for a partner if given. */
  count(otherHerId?: string): number {
    return this.requests.filter((r) => r.path.includes('/Agreements/') && (!otherHerId || r.otherHerId === otherHerId)).length;
  }

  protected answer(req: IncomingMessage, res: ServerResponse): void {
    const path = new URL(req.url ?? '/', 'http://stand-in').pathname;
    const agreement = /\/api\/v1\/Agreements\/HerIds\/(\d+)\/(\d+)$/.exec(path);
    const profile = /\/api\/v1\/Profiles\/(\d+)$/.exec(path);
    this.requests.push({ path, myHerId: agreement?.[1] ?? profile?.[1], otherHerId: agreement?.[2] });
    if (this.failWith) return void res.writeHead(this.failWith).end();
    if (req.method !== 'GET' || !/application\/xml/.test(req.headers.accept ?? '')) return void res.writeHead(406).end();
    if (agreement) {
      const [, my, other] = agreement as unknown as [string, string, string];
      const a = this.agreements.get(other);
      if (!a) return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"message":"No agreement found"}');
      return void res.writeHead(200, { 'content-type': 'application/xml; charset=utf-8' }).end(cpaXml(my, a));
    }
    if (profile && this.profiles.has(profile[1] as string))
      return void res.writeHead(200, { 'content-type': 'application/xml; charset=utf-8' }).end(SAMPLE_CPP.replaceAll('93238', profile[1] as string));
    res.writeHead(404).end();
  }
}
