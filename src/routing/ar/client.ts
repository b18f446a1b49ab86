// A client for NHN's Adresseregister SOAP service (ICommunicationPartyService, DESIGN §4.6),
// basic binding (SOAP 1.1, HTTP basic auth). The messages are a few elements each, so requests
// are built with xmlbuilder2 and answers read with libxml2 (communicationParty.ts) rather than a
// WSDL-driven SOAP stack. Whatever keeps AR from answering (network, timeout, HTTP error, a
// fault other than "no such HER-id") is `ArUnavailable`: transient, never a verdict on a message.
import { create } from 'xmlbuilder2';
import {
  type ArAnswer,
  type ArParty,
  type ArPartyFacts,
  readCertificateDetails,
  readCertificateSearch,
  readCommunicationPartyDetails,
  readPing,
} from './communicationParty.js';

const SERVICE_NS = 'http://register.nhn.no/CommunicationParty';
const ACTION = `${SERVICE_NS}/ICommunicationPartyService`;

export class ArUnavailable extends Error {
  override readonly name = 'ArUnavailable';
}

export interface ArClientOptions {
  url: string;
  user?: string;
  password?: string;
  timeoutMs: number;
  /** the bydel of an organisation (AR has none): from the configured table or the snapshot */
  bydelOf: (p: ArPartyFacts) => string | undefined;
}

type CertificateOperation = 'GetCertificateDetailsForEncryption' | 'GetCertificateDetailsForValidatingSignature';
type CertificateSearch = 'SearchCertificatesForEncryption' | 'SearchCertificatesForValidatingSignature';

export class AddressRegisterClient {
  constructor(private readonly options: ArClientOptions) {}

  /** The party and, for an organisation, its services; undefined when AR has no such HER-id. */
  async partyDetails(herId: string): Promise<ArParty[] | undefined> {
    return this.found(readCommunicationPartyDetails(await this.call('GetCommunicationPartyDetails', { herId }), this.options.bydelOf));
  }

  /** The party's encryption certificate (PEM); undefined when it has none or AR has no such party. */
  async encryptionCertificate(herId: string): Promise<string | undefined> {
    return this.certificate('GetCertificateDetailsForEncryption', herId);
  }

  /** The certificate that validates the party's signatures (PEM). */
  async signingCertificate(herId: string): Promise<string | undefined> {
    return this.certificate('GetCertificateDetailsForValidatingSignature', herId);
  }

  /** Every encryption certificate AR finds for an organisation number (PEM), whichever party it belongs to. */
  async searchEncryptionCertificates(organisationNumber: string): Promise<string[]> {
    return this.search('SearchCertificatesForEncryption', organisationNumber);
  }

  /** Every certificate that validates signatures AR finds for an organisation number (PEM). */
  async searchSigningCertificates(organisationNumber: string): Promise<string[]> {
    return this.search('SearchCertificatesForValidatingSignature', organisationNumber);
  }

  async ping(): Promise<string> {
    const answer = readPing(await this.call('Ping'));
    if (!answer.ok) throw new ArUnavailable(`AR answered Ping with the fault ${answer.fault.code}`);
    return answer.value;
  }

  private async certificate(operation: CertificateOperation, herId: string): Promise<string | undefined> {
    return this.found(readCertificateDetails(await this.call(operation, { herId }), operation));
  }

  /** `sn` is the organisation number; cn and ou are left out (both optional), so every certificate of the organisation is found. */
  private async search(operation: CertificateSearch, organisationNumber: string): Promise<string[]> {
    return this.found(readCertificateSearch(await this.call(operation, { sn: organisationNumber }), operation)) ?? [];
  }

  private found<T>(answer: ArAnswer<T>): T | undefined {
    if (answer.ok) return answer.value;
    if (answer.fault.code === 'InvalidHerIdSupplied') return undefined;
    throw new ArUnavailable(`AR answered with the fault ${answer.fault.code}`);
  }

  private async call(operation: string, parameters: Record<string, string> = {}): Promise<Buffer> {
    const doc = create({ version: '1.0', encoding: 'UTF-8' });
    const request = doc.ele('http://schemas.xmlsoap.org/soap/envelope/', 'soap:Envelope').ele('soap:Body').ele(SERVICE_NS, operation);
    for (const [name, value] of Object.entries(parameters)) request.ele(name).txt(value);
    const headers: Record<string, string> = { 'content-type': 'text/xml; charset=utf-8', soapaction: `"${ACTION}/${operation}"` };
    const { user, password } = this.options;
    if (user !== undefined) headers.authorization = `Basic ${Buffer.from(`${user}:${password ?? ''}`).toString('base64')}`;
    let response: Response;
    try {
      response = await fetch(this.options.url, { method: 'POST', headers, body: doc.end(), signal: AbortSignal.timeout(this.options.timeoutMs) });
    } catch (e) {
      const why = (e as Error).name === 'TimeoutError' ? `no answer within ${this.options.timeoutMs} ms` : 'it cannot be reached';
      throw new ArUnavailable(`AR ${operation}: ${why}`);
    }
    const body = Buffer.from(await response.arrayBuffer());
    // SOAP faults come with HTTP 500 and are read as answers; any other error status is AR not answering.
    const isXml = /xml/.test(response.headers.get('content-type') ?? '');
    if (!response.ok && !(response.status === 500 && isXml)) throw new ArUnavailable(`AR ${operation}: HTTP ${response.status}`);
    return body;
  }
}
