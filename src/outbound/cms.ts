// CMS EnvelopedData (RFC 5652 §6) for the ebXML payload part: HIS 1037 §5.5 sends the business
// document (MsgHead or AppRec) as `application/pkcs7-mime; smime-type=enveloped-data`, encrypted
// for the receiver's encryption certificate (REFERENCE.md §5.1, §7). As in NHN's library: one
// KeyTransRecipientInfo per certificate, identified by IssuerAndSerialNumber; AES-256-CBC by
// default, 3DES on request; RSA PKCS#1 v1.5 key transport by default, RSA-OAEP on request.
//
// The CMS structure and the cipher work are node-forge's `pkcs7` module (verified against
// `openssl cms` here, see docs/dependencies.md), except:
//  * RSA-OAEP key transport, which forge's pkcs7 lacks, is node:crypto (`publicEncrypt` /
//    `privateDecrypt`), placed in and read from forge's RecipientInfo; forge's AlgorithmIdentifier
//    is given the RSAES-OAEP-params (RFC 4055 §4.1) that forge cannot write, and the parameters
//    of received ones are read with a forge validator because forge's own drops them;
//  * forge writes the encrypted content as a constructed [0] around an OCTET STRING (valid BER,
//    what forge's docs call the non-OpenSSL form); `toDer` below makes it the primitive
//    [0] IMPLICIT OCTET STRING that DER requires;
//  * forge rebuilds the recipient's issuer Name from its parsed attributes and UTF-8-encodes
//    UTF8String values a second time (an issuer with "Sør-Øst" comes out as "SÃ¸r-Ãst", and no
//    one can find their RecipientInfo), so `toDer` puts the certificate's own issuer and serial
//    number (its exact DER) into IssuerAndSerialNumber.
// RSA PKCS#1 v1.5 *decryption* cannot move to node:crypto: Node 20 refuses it (CVE-2023-46809)
// with its bundled OpenSSL 3.0, so it stays in forge (pure JS, about 40 ms per 2048-bit key).
//
// What EnvelopedData cannot do: CBC has no integrity check. A tampered ciphertext is refused only
// when the padding no longer checks out: always when the padding bytes are changed, nearly always
// when the last block is; a byte flipped in an earlier block decrypts to garbage, undetected.
// Integrity comes from the signature over the CMS object (the ebXML `cid:` reference digest,
// HIS 1037; the SignedData inside for AMQP), which must be checked before this decryption.
//
// The module never logs; decryption failures come back as one sentence with no content in it.
import { constants, createPrivateKey, privateDecrypt, publicEncrypt, randomBytes, X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';
import { keyUsageOf, readCertificate, TrustStore } from './certificates.js';

export type ContentCipher = 'aes-256-cbc' | 'des-ede3-cbc';
/** what decryption accepts: also AES-128/192, which other senders may use */
export type ReceivedContentCipher = ContentCipher | 'aes-128-cbc' | 'aes-192-cbc';
export type KeyTransport = 'rsa-pkcs1' | 'rsa-oaep';
/** RSA-OAEP with SHA-1 (the RFC 4055 default, also openssl's) is 'rsa-oaep'; other hashes are named */
export type ReceivedKeyTransport = KeyTransport | 'rsa-oaep-sha224' | 'rsa-oaep-sha256' | 'rsa-oaep-sha384' | 'rsa-oaep-sha512';

export interface EncryptOptions {
  /** default 'aes-256-cbc' */
  contentCipher?: ContentCipher;
  /** default 'rsa-pkcs1' (RSAES-PKCS1-v1_5); 'rsa-oaep' is RSAES-OAEP with SHA-1 and MGF1-SHA-1 */
  keyTransport?: KeyTransport;
}

export interface DecryptionKey {
  keyPem: string;
  certPem: string;
}

export type DecryptResult =
  | { ok: true; content: Buffer; keyIndex: number; contentCipher: ReceivedContentCipher; keyTransport: ReceivedKeyTransport }
  | { ok: false; reason: string };

// ---------------------------------------------------------------------------------------------
// The part of node-forge's API this module uses. node-forge ships no TypeScript types; rather than
// a second dependency (@types/node-forge), the surface used here is typed by hand.

interface ByteBuffer {
  getBytes(): string;
  bytes(): string;
  length(): number;
}

interface Asn1 {
  tagClass: number;
  type: number;
  constructed: boolean;
  value: Asn1[] | string;
}

/** forge's declarative ASN.1 schema, as its own pkcs7/x509 validators are written */
interface Asn1Validator {
  name: string;
  tagClass?: number;
  type?: number;
  constructed?: boolean;
  optional?: boolean;
  capture?: string;
  captureAsn1?: string;
  value?: Asn1Validator[];
}

interface ForgeRsaPrivateKey {
  decrypt(data: string, scheme?: 'RSAES-PKCS1-V1_5'): string;
}

interface ForgeCertificate {
  serialNumber: string;
}

interface ForgeRecipient {
  encryptedContent: { algorithm: string; content?: string };
}

interface ForgeEnvelopedData {
  type: string;
  content?: ByteBuffer;
  recipients: ForgeRecipient[];
  encryptedContent: { algorithm: string; parameter?: ByteBuffer; content?: ByteBuffer; key?: ByteBuffer };
  rawCapture: { recipientInfos: Asn1 };
  addRecipient(cert: ForgeCertificate): void;
  encrypt(key?: ByteBuffer, cipherOid?: string): void;
  findRecipient(cert: ForgeCertificate): ForgeRecipient | null;
  decrypt(recipient?: ForgeRecipient, key?: ForgeRsaPrivateKey): void;
  toAsn1(): Asn1;
}

interface Forge {
  asn1: {
    Class: { UNIVERSAL: number; CONTEXT_SPECIFIC: number };
    Type: { INTEGER: number; OID: number; SEQUENCE: number; OCTETSTRING: number; NULL: number };
    fromDer(bytes: ByteBuffer, options?: { strict?: boolean; parseAllBytes?: boolean; decodeBitStrings?: boolean }): Asn1;
    toDer(obj: Asn1): ByteBuffer;
    create(tagClass: number, type: number, constructed: boolean, value: Asn1[] | string): Asn1;
    derToOid(bytes: string): string;
    validate(obj: Asn1, validator: Asn1Validator, capture: Record<string, string | Asn1 | undefined>, errors?: string[]): boolean;
  };
  pkcs7: { createEnvelopedData(): ForgeEnvelopedData; messageFromAsn1(obj: Asn1): ForgeEnvelopedData };
  pki: {
    certificateFromPem(pem: string): ForgeCertificate;
    privateKeyFromPem(pem: string): ForgeRsaPrivateKey;
  };
  util: { createBuffer(bytes?: string): ByteBuffer };
}

const forge = createRequire(import.meta.url)('node-forge') as Forge;
const { asn1 } = forge;

// ---------------------------------------------------------------------------------------------

const OID = {
  envelopedData: '1.2.840.113549.1.7.3',
  rsaEncryption: '1.2.840.113549.1.1.1',
  rsaesOaep: '1.2.840.113549.1.1.7',
  mgf1: '1.2.840.113549.1.1.8',
  pSpecified: '1.2.840.113549.1.1.9',
} as const;

const CIPHERS: Record<string, { name: ReceivedContentCipher; keyLength: number; blockSize: number }> = {
  '2.16.840.1.101.3.4.1.2': { name: 'aes-128-cbc', keyLength: 16, blockSize: 16 },
  '2.16.840.1.101.3.4.1.22': { name: 'aes-192-cbc', keyLength: 24, blockSize: 16 },
  '2.16.840.1.101.3.4.1.42': { name: 'aes-256-cbc', keyLength: 32, blockSize: 16 },
  '1.2.840.113549.3.7': { name: 'des-ede3-cbc', keyLength: 24, blockSize: 8 },
};
const CIPHER_OID: Record<ContentCipher, string> = { 'aes-256-cbc': '2.16.840.1.101.3.4.1.42', 'des-ede3-cbc': '1.2.840.113549.3.7' };

const OAEP_HASHES: Record<string, { node: string; name: ReceivedKeyTransport }> = {
  '1.3.14.3.2.26': { node: 'sha1', name: 'rsa-oaep' },
  '2.16.840.1.101.3.4.2.4': { node: 'sha224', name: 'rsa-oaep-sha224' },
  '2.16.840.1.101.3.4.2.1': { node: 'sha256', name: 'rsa-oaep-sha256' },
  '2.16.840.1.101.3.4.2.2': { node: 'sha384', name: 'rsa-oaep-sha384' },
  '2.16.840.1.101.3.4.2.3': { node: 'sha512', name: 'rsa-oaep-sha512' },
};
const SHA1 = '1.3.14.3.2.26';

const { UNIVERSAL, CONTEXT_SPECIFIC } = asn1.Class;

const contentInfoValidator: Asn1Validator = {
  name: 'ContentInfo',
  tagClass: UNIVERSAL,
  type: asn1.Type.SEQUENCE,
  constructed: true,
  value: [{ name: 'ContentInfo.contentType', tagClass: UNIVERSAL, type: asn1.Type.OID, constructed: false, capture: 'contentType' }],
};

// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer, … }, … }
const certificateIssuerValidator: Asn1Validator = {
  name: 'Certificate',
  tagClass: UNIVERSAL,
  type: asn1.Type.SEQUENCE,
  constructed: true,
  value: [
    {
      name: 'Certificate.tbsCertificate',
      tagClass: UNIVERSAL,
      type: asn1.Type.SEQUENCE,
      constructed: true,
      value: [
        { name: 'tbsCertificate.version', tagClass: CONTEXT_SPECIFIC, type: 0, constructed: true, optional: true },
        { name: 'tbsCertificate.serialNumber', tagClass: UNIVERSAL, type: asn1.Type.INTEGER, constructed: false, captureAsn1: 'serial' },
        { name: 'tbsCertificate.signature', tagClass: UNIVERSAL, type: asn1.Type.SEQUENCE, constructed: true },
        { name: 'tbsCertificate.issuer', tagClass: UNIVERSAL, type: asn1.Type.SEQUENCE, constructed: true, captureAsn1: 'issuer' },
      ],
    },
  ],
};

const algorithmIdentifier = (name: string, capture: string, optionalParams?: Asn1Validator): Asn1Validator => ({
  name,
  tagClass: UNIVERSAL,
  type: asn1.Type.SEQUENCE,
  constructed: true,
  value: [{ name: `${name}.algorithm`, tagClass: UNIVERSAL, type: asn1.Type.OID, constructed: false, capture }, ...(optionalParams ? [optionalParams] : [])],
});

// RSAES-OAEP-params (RFC 4055 §4.1), every field DEFAULT: [0] hashAlgorithm sha1,
// [1] maskGenAlgorithm mgf1(sha1), [2] pSourceAlgorithm pSpecified(empty label).
const oaepParamsValidator: Asn1Validator = {
  name: 'RSAES-OAEP-params',
  tagClass: UNIVERSAL,
  type: asn1.Type.SEQUENCE,
  constructed: true,
  value: [
    { name: 'hashAlgorithm', tagClass: CONTEXT_SPECIFIC, type: 0, constructed: true, optional: true, value: [algorithmIdentifier('hash', 'hash')] },
    {
      name: 'maskGenAlgorithm',
      tagClass: CONTEXT_SPECIFIC,
      type: 1,
      constructed: true,
      optional: true,
      value: [algorithmIdentifier('mgf', 'mgf', { ...algorithmIdentifier('mgfHash', 'mgfHash'), optional: true })],
    },
    {
      name: 'pSourceAlgorithm',
      tagClass: CONTEXT_SPECIFIC,
      type: 2,
      constructed: true,
      optional: true,
      value: [
        algorithmIdentifier('pSource', 'pSource', {
          name: 'pSource.label',
          tagClass: UNIVERSAL,
          type: asn1.Type.OCTETSTRING,
          constructed: false,
          capture: 'label',
        }),
      ],
    },
  ],
};

const binary = (b: Buffer): string => b.toString('binary');
const bytesOf = (s: string): Buffer => Buffer.from(s, 'binary');

/**
 * Encrypts `content` (the exact bytes, not re-encoded) for the holder of `recipientCertPem` and
 * returns the DER of a ContentInfo(EnvelopedData). Throws when the certificate is not an RSA
 * certificate; check it first with {@link encryptionCertificateProblem}.
 */
export function encryptEnveloped(content: Buffer, recipientCertPem: string, options: EncryptOptions = {}): Buffer {
  const cipherOid = CIPHER_OID[options.contentCipher ?? 'aes-256-cbc'];
  const keyTransport = options.keyTransport ?? 'rsa-pkcs1';
  let cert: ForgeCertificate;
  try {
    cert = forge.pki.certificateFromPem(recipientCertPem);
  } catch (e) {
    throw new Error(`the recipient certificate could not be read as an RSA certificate (${(e as Error).message})`);
  }
  const cek = randomBytes(CIPHERS[cipherOid].keyLength);
  const msg = forge.pkcs7.createEnvelopedData();
  msg.addRecipient(cert);
  if (keyTransport === 'rsa-oaep') {
    // node:crypto primitive (forge's pkcs7 has no OAEP): the key is already encrypted, so forge's
    // encrypt() leaves this RecipientInfo alone.
    const recipient = msg.recipients[0];
    recipient.encryptedContent.algorithm = OID.rsaesOaep;
    recipient.encryptedContent.content = binary(
      publicEncrypt({ key: new X509Certificate(recipientCertPem).publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, cek),
    );
  }
  msg.content = forge.util.createBuffer(binary(content));
  msg.encrypt(forge.util.createBuffer(binary(cek)), cipherOid);
  return toDer(msg, keyTransport, issuerAndSerialOf(recipientCertPem));
}

/** forge's ContentInfo made DER, with the corrections described at the top of the file. */
function toDer(msg: ForgeEnvelopedData, keyTransport: KeyTransport, issuerAndSerial: { issuer: Asn1; serial: Asn1 }): Buffer {
  const contentInfo = msg.toAsn1();
  const envelopedData = children(children(contentInfo)[1])[0]; // ContentInfo.[0] EXPLICIT EnvelopedData
  const [, recipientInfos, encryptedContentInfo] = children(envelopedData);
  // KeyTransRecipientInfo ::= SEQUENCE { version, rid IssuerAndSerialNumber, keyEncryptionAlgorithm, encryptedKey }
  const [, rid, keyEncryptionAlgorithm] = children(children(recipientInfos)[0]);
  const ias = children(rid);
  ias[0] = issuerAndSerial.issuer;
  ias[1] = issuerAndSerial.serial;
  if (keyTransport === 'rsa-oaep') {
    // forge always writes NULL parameters; RSAES-OAEP-params with all defaults is an empty SEQUENCE.
    children(keyEncryptionAlgorithm)[1] = asn1.create(UNIVERSAL, asn1.Type.SEQUENCE, true, []);
  }
  const eci = children(encryptedContentInfo);
  const octetString = children(eci[2])[0];
  eci[2] = asn1.create(CONTEXT_SPECIFIC, 0, false, octetString.value as string);
  return bytesOf(asn1.toDer(contentInfo).getBytes());
}

/** The certificate's issuer Name and serialNumber as they are in its DER (RFC 5280 §4.1). */
function issuerAndSerialOf(certPem: string): { issuer: Asn1; serial: Asn1 } {
  const der = new X509Certificate(certPem).raw;
  const capture: Record<string, string | Asn1 | undefined> = {};
  if (!asn1.validate(asn1.fromDer(forge.util.createBuffer(binary(der))), certificateIssuerValidator, capture))
    throw new Error('the recipient certificate has no readable issuer and serial number');
  return { issuer: capture.issuer as Asn1, serial: capture.serial as Asn1 };
}

function children(node: Asn1 | undefined): Asn1[] {
  if (!node || !Array.isArray(node.value)) throw new Error('unexpected ASN.1 structure');
  return node.value;
}

/**
 * Decrypts a ContentInfo(EnvelopedData) with whichever configured key pair it is addressed to
 * (issuer + serial of the certificate), so that during a certificate rollover both the old and
 * the new key can be configured. Never throws; refuses with one sentence instead.
 */
export function decryptEnveloped(der: Buffer, keys: DecryptionKey[]): DecryptResult {
  try {
    return decrypt(der, keys);
  } catch {
    return refuse('the CMS object could not be read');
  }
}

const refuse = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });
const UNDECRYPTABLE = 'the content could not be decrypted (wrong key or tampered ciphertext)';

function decrypt(der: Buffer, keys: DecryptionKey[]): DecryptResult {
  if (!Buffer.isBuffer(der) || der.length === 0) return refuse('the CMS object is empty');
  let root: Asn1;
  try {
    root = asn1.fromDer(forge.util.createBuffer(binary(der)), { strict: true, parseAllBytes: true, decodeBitStrings: false });
  } catch {
    return refuse('the CMS object is truncated or not DER');
  }
  const info: Record<string, string | Asn1 | undefined> = {};
  if (!asn1.validate(root, contentInfoValidator, info)) return refuse('the bytes are not a CMS ContentInfo');
  const contentType = asn1.derToOid(info.contentType as string);
  if (contentType !== OID.envelopedData) return refuse(`the CMS object is not EnvelopedData but content type ${contentType}`);

  let msg: ForgeEnvelopedData;
  try {
    msg = forge.pkcs7.messageFromAsn1(root);
  } catch (e) {
    const message = (e as Error).message;
    if (message.includes('RecipientInfo'))
      return refuse('a RecipientInfo is not a key-transport recipient identified by issuer and serial number, the only kind the gateway reads');
    if (message.includes('ContentType Data')) return refuse('the encrypted content is not of type id-data');
    return refuse('the CMS EnvelopedData is malformed');
  }

  const { encryptedContent } = msg;
  const cipher = CIPHERS[encryptedContent.algorithm];
  if (!cipher) return refuse(`unsupported content encryption algorithm ${encryptedContent.algorithm}`);
  if (encryptedContent.parameter?.length() !== cipher.blockSize) return refuse('the content encryption IV is missing or has the wrong length');
  const ciphertextLength = encryptedContent.content?.length() ?? 0;
  if (ciphertextLength === 0 || ciphertextLength % cipher.blockSize !== 0)
    return refuse('the encrypted content is truncated (not a whole number of cipher blocks)');

  let unreadable = 0;
  for (const [keyIndex, { keyPem, certPem }] of keys.entries()) {
    let cert: ForgeCertificate;
    try {
      cert = forge.pki.certificateFromPem(certPem);
    } catch {
      unreadable++;
      continue;
    }
    const recipient = msg.findRecipient(cert);
    if (!recipient) continue;

    const transport = keyTransportOf(msg, recipient);
    if ('reason' in transport) return refuse(transport.reason);
    let cek: Buffer | undefined;
    try {
      cek = transport.decryptKey(recipient.encryptedContent.content ?? '', keyPem);
    } catch (e) {
      if (e instanceof KeyNotReadable) return refuse(`the private key configured with encryption certificate ${keyIndex + 1} could not be read`);
      // A bad key-transport padding gets the same answer as a bad content padding (RFC 3218
      // §2.3), so the reply is no padding oracle.
      return refuse(UNDECRYPTABLE);
    }
    if (cek.length !== cipher.keyLength) return refuse(UNDECRYPTABLE);
    encryptedContent.key = forge.util.createBuffer(binary(cek));
    try {
      msg.decrypt(); // the key is set, so forge only does the content decryption (and padding check)
    } catch {
      return refuse(UNDECRYPTABLE);
    }
    if (!msg.content) return refuse(UNDECRYPTABLE);
    return { ok: true, content: bytesOf(msg.content.getBytes()), keyIndex, contentCipher: cipher.name, keyTransport: transport.name };
  }
  const also = unreadable > 0 ? ` (${unreadable} configured certificate${unreadable > 1 ? 's' : ''} could not be read)` : '';
  return refuse(`the CMS object is addressed to none of the gateway's encryption certificates${also}`);
}

class KeyNotReadable extends Error {}

type Transport = { name: ReceivedKeyTransport; decryptKey(encryptedKey: string, keyPem: string): Buffer } | { reason: string };

function keyTransportOf(msg: ForgeEnvelopedData, recipient: ForgeRecipient): Transport {
  const algorithm = recipient.encryptedContent.algorithm;
  if (algorithm === OID.rsaEncryption) {
    return {
      name: 'rsa-pkcs1',
      decryptKey(encryptedKey, keyPem) {
        let key: ForgeRsaPrivateKey;
        try {
          key = forge.pki.privateKeyFromPem(keyPem);
        } catch {
          throw new KeyNotReadable();
        }
        return bytesOf(key.decrypt(encryptedKey, 'RSAES-PKCS1-V1_5'));
      },
    };
  }
  if (algorithm !== OID.rsaesOaep) return { reason: `unsupported key transport algorithm ${algorithm}` };

  // forge drops the OAEP parameters (a SEQUENCE where it expects NULL), so they are read from the
  // RecipientInfo forge captured: SEQUENCE { version, rid, keyEncryptionAlgorithm, encryptedKey }.
  const rawRecipient = children(msg.rawCapture.recipientInfos)[msg.recipients.indexOf(recipient)];
  const params = children(children(rawRecipient)[2])[1];
  let hashOid = SHA1;
  if (params && !(params.tagClass === UNIVERSAL && params.type === asn1.Type.NULL)) {
    const p: Record<string, string | Asn1 | undefined> = {};
    if (!asn1.validate(params, oaepParamsValidator, p)) return { reason: 'the RSA-OAEP parameters are malformed' };
    const oid = (k: string) => (typeof p[k] === 'string' ? asn1.derToOid(p[k] as string) : undefined);
    hashOid = oid('hash') ?? SHA1;
    const mgf = oid('mgf') ?? OID.mgf1;
    const mgfHash = oid('mgfHash') ?? (p.mgf ? undefined : SHA1);
    if (mgf !== OID.mgf1 || mgfHash !== hashOid)
      return { reason: `unsupported RSA-OAEP mask generation (${mgf} with ${mgfHash ?? 'no hash'}; only MGF1 with the OAEP hash is read)` };
    if (p.pSource !== undefined && (oid('pSource') !== OID.pSpecified || p.label !== '')) return { reason: 'unsupported RSA-OAEP label' };
  }
  const hash = OAEP_HASHES[hashOid];
  if (!hash) return { reason: `unsupported RSA-OAEP hash algorithm ${hashOid}` };
  return {
    name: hash.name,
    // node:crypto primitive (forge's pkcs7 has no OAEP), inside forge's parsed structure.
    decryptKey(encryptedKey, keyPem) {
      let key: ReturnType<typeof createPrivateKey>;
      try {
        key = createPrivateKey(keyPem);
      } catch {
        throw new KeyNotReadable();
      }
      return privateDecrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash.node }, bytesOf(encryptedKey));
    },
  };
}

/**
 * Why `certPem` cannot serve as an encryption certificate at `at`, in one sentence, or undefined
 * when it can: an RSA key, valid at `at`, and KeyUsage with keyEncipherment or dataEncipherment
 * (or no KeyUsage extension at all, which RFC 5280 reads as any usage).
 */
export function encryptionCertificateProblem(certPem: string, at: Date, trust: TrustStore = TrustStore.none()): string | undefined {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return 'the text is not a certificate (no readable PEM or DER X.509)';
  }
  if (cert.publicKey.asymmetricKeyType !== 'rsa')
    return `the certificate's key is ${cert.publicKey.asymmetricKeyType ?? 'unknown'}, not RSA, so it cannot receive an RSA-encrypted key`;
  const validFrom = new Date(cert.validFrom);
  const validTo = new Date(cert.validTo);
  if (Number.isNaN(validFrom.getTime()) || Number.isNaN(validTo.getTime())) return 'the certificate has an unreadable validity period';
  if (at < validFrom) return `the certificate is not yet valid (valid from ${validFrom.toISOString()})`;
  if (at > validTo) return `the certificate expired on ${validTo.toISOString()}`;
  const usage = keyUsageOf(readCertificate(cert.toString()));
  if (usage && !usage.includes('keyEncipherment') && !usage.includes('dataEncipherment'))
    return 'the certificate key usage does not allow encryption (neither keyEncipherment nor dataEncipherment)';
  return trust.chainProblem(certPem, at);
}
