// A CollaborationProtocolAgreement (ebXML CPPA 2.0, REFERENCE §5.1) read into what the gateway
// does with it when it sends to the partner: per Service and Action it sends, the signature
// algorithm, whether a transport Acknowledgment is requested, how often and how far apart an
// unacknowledged message is resent, whether the payload is encrypted, and the CPAId for
// eb:CPAId. Parsed safely (no DTD, bounded size); a CPA names HER-ids as PartyId type HER.
import type { XmlNode } from 'libxml2-wasm';
import { durationMs } from '../../config/config.js';
import { findAll, findFirst, parseXmlSafely, textOf } from '../../mapping/xml.js';
import type { SignatureAlgorithm } from '../xmldsig.js';

export const CPPA_NS = {
  tns: 'http://www.oasis-open.org/committees/ebxml-cppa/schema/cpp-cpa-2_0.xsd',
} as const;

/** NHN's CPAs run to some hundred kilobytes (one party with many processes); far below this. */
const MAX_CPA_BYTES = 5_000_000;

/** What the agreement says about one Service + Action the gateway's party sends. */
export interface SendingTerms {
  signatureAlgorithm: SignatureAlgorithm;
  /** MessagingCharacteristics@ackRequested is not "never" */
  ackRequested: boolean;
  /** ReliableMessaging/Retries and RetryInterval (an ISO 8601 duration), when the CPA says */
  retries?: number;
  retryInterval?: string;
  /** the action's Packaging wraps the payload in application/pkcs7-mime enveloped-data */
  encrypted: boolean;
}

export interface Agreement {
  cpaId: string;
  /** Status@value: proposed, agreed or signed */
  status: string;
  /** the agreement's period (Start, End); it is applied only inside it */
  start?: string;
  end?: string;
  /** `<Service>|<Action>` → terms, for what our party can send */
  sends: Record<string, SendingTerms>;
}

const sendKey = (service: string, action: string) => `${service}|${action}`;

/** The terms for one outgoing Service + Action, when the agreement is in force at `at` and covers it. */
export function termsFor(agreement: Agreement, service: string, action: string, at: Date): SendingTerms | undefined {
  if (agreement.start && at < new Date(agreement.start)) return undefined;
  if (agreement.end && at > new Date(agreement.end)) return undefined;
  return agreement.sends[sendKey(service, action)];
}

const SIGNATURE_ALGORITHMS: Record<string, SignatureAlgorithm> = {
  'http://www.w3.org/2000/09/xmldsig#rsa-sha1': 'rsa-sha1',
  'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256': 'rsa-sha256',
  'RSA-SHA1': 'rsa-sha1',
  'RSA-SHA256': 'rsa-sha256',
};

const DIGEST_OF: Record<SignatureAlgorithm, string> = {
  'rsa-sha1': 'http://www.w3.org/2000/09/xmldsig#sha1',
  'rsa-sha256': 'http://www.w3.org/2001/04/xmlenc#sha256',
};

/**
 * The agreement as `ourHerId` sends under it. Throws with one sentence when the bytes are no CPA,
 * do not name our party, or ask for a signature algorithm the gateway cannot make.
 */
export function readAgreement(xml: Buffer, ourHerId: string): Agreement {
  if (!/^\d+$/.test(ourHerId)) throw new Error(`${ourHerId} is not a HER-id.`);
  const parsed = parseXmlSafely(xml, MAX_CPA_BYTES, { what: 'The CPA from the CPPA register' });
  if (!parsed.ok) throw new Error(parsed.error.reason);
  const doc = parsed.value;
  try {
    const root = findFirst(doc.root, '/tns:CollaborationProtocolAgreement', CPPA_NS);
    if (!root) throw new Error('The CPPA register answered with something other than a CollaborationProtocolAgreement.');
    const cpaId = textOf(root, '@tns:cpaid', CPPA_NS);
    if (!cpaId) throw new Error('The CPA has no cpaid.');
    const ours = findFirst(root, `tns:PartyInfo[tns:PartyId[@tns:type="HER"]="${ourHerId}"]`, CPPA_NS);
    if (!ours) throw new Error(`The CPA ${cpaId} does not name our HER-id ${ourHerId} as a party.`);
    const sends: Record<string, SendingTerms> = {};
    for (const binding of findAll(ours, 'tns:CollaborationRole/tns:ServiceBinding', CPPA_NS)) {
      const service = textOf(binding, 'tns:Service', CPPA_NS);
      if (!service) continue;
      for (const action of findAll(binding, 'tns:CanSend/tns:ThisPartyActionBinding', CPPA_NS)) {
        const name = textOf(action, '@tns:action', CPPA_NS);
        if (!name) continue;
        sends[sendKey(service, name)] = sendingTerms(root, ours, action, cpaId);
      }
    }
    return {
      cpaId,
      status: textOf(root, 'tns:Status/@tns:value', CPPA_NS) ?? 'unknown',
      start: isoOf(textOf(root, 'tns:Start', CPPA_NS)),
      end: isoOf(textOf(root, 'tns:End', CPPA_NS)),
      sends,
    };
  } finally {
    doc.dispose();
  }
}

/** One action we send: its channel's messaging characteristics, its DocExchange's sender binding, its packaging. */
function sendingTerms(root: XmlNode, ours: XmlNode, action: XmlNode, cpaId: string): SendingTerms {
  const channelId = idOf(textOf(action, 'tns:ChannelId', CPPA_NS));
  const channel = channelId ? findFirst(ours, `tns:DeliveryChannel[@tns:channelId="${channelId}"]`, CPPA_NS) : undefined;
  const docExchangeId = channel ? idOf(textOf(channel, '@tns:docExchangeId', CPPA_NS)) : undefined;
  const sender = docExchangeId ? findFirst(ours, `tns:DocExchange[@tns:docExchangeId="${docExchangeId}"]/tns:ebXMLSenderBinding`, CPPA_NS) : undefined;
  const algorithmName = sender
    ? (textOf(sender, 'tns:SenderNonRepudiation/tns:SignatureAlgorithm/@tns:w3c', CPPA_NS) ??
      textOf(sender, 'tns:SenderNonRepudiation/tns:SignatureAlgorithm', CPPA_NS))
    : undefined;
  const signatureAlgorithm = algorithmName === undefined ? 'rsa-sha256' : SIGNATURE_ALGORITHMS[algorithmName];
  if (!signatureAlgorithm) throw new Error(`The CPA ${cpaId} asks for the signature algorithm ${algorithmName}, which the gateway cannot make.`);
  // the digests go with the signature algorithm (xmldsig.ts): a CPA asking for another pairing cannot be honoured
  const hashFunction = sender ? textOf(sender, 'tns:SenderNonRepudiation/tns:HashFunction', CPPA_NS) : undefined;
  if (hashFunction && hashFunction !== DIGEST_OF[signatureAlgorithm])
    throw new Error(`The CPA ${cpaId} pairs the signature algorithm ${algorithmName} with the digest ${hashFunction}, which the gateway cannot make.`);
  const retries = sender ? textOf(sender, 'tns:ReliableMessaging/tns:Retries', CPPA_NS) : undefined;
  const retryInterval = sender ? textOf(sender, 'tns:ReliableMessaging/tns:RetryInterval', CPPA_NS) : undefined;
  const packageId = idOf(textOf(action, '@tns:packageId', CPPA_NS));
  const encapsulation = packageId ? findFirst(root, `tns:Packaging[@tns:id="${packageId}"]/tns:CompositeList/tns:Encapsulation`, CPPA_NS) : undefined;
  return {
    signatureAlgorithm,
    // ebMS 2.0: "never" is the only value that says the receiver sends no Acknowledgment; HIS 1037 otherwise always asks
    ackRequested: (channel ? textOf(channel, 'tns:MessagingCharacteristics/@tns:ackRequested', CPPA_NS) : undefined) !== 'never',
    ...(retries !== undefined && /^\d+$/.test(retries) ? { retries: Number(retries) } : {}),
    ...(retryInterval && isDuration(retryInterval) ? { retryInterval } : {}),
    encrypted:
      encapsulation !== undefined &&
      textOf(encapsulation, '@tns:mimetype', CPPA_NS) === 'application/pkcs7-mime' &&
      /enveloped-data/.test(textOf(encapsulation, '@tns:mimeparameters', CPPA_NS) ?? ''),
  };
}

/** An id the CPA uses to refer within itself, only when it is safe to put in an XPath literal. */
const idOf = (text: string | undefined) => (text && /^[\w.:-]+$/.test(text) ? text : undefined);

function isDuration(iso: string): boolean {
  try {
    return durationMs(iso) > 0;
  } catch {
    return false;
  }
}

function isoOf(text: string | undefined): string | undefined {
  if (!text) return undefined;
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}
