// A party's certificates as AR gives them: GetCertificateDetailsForEncryption and
// …ForValidatingSignature answer one certificate each, but during a rollover the party has two
// valid ones for a purpose, and its E_DS address (an LDAP URL) lists the serial numbers of all.
//
// Only when the E_DS lists a serial neither answer has are the candidates asked for, with
// SearchCertificatesForEncryption / …ForValidatingSignature by organisation number: they return
// ArrayOfCertificateDetails, the certificates themselves, already split by purpose.
// SearchCertificatesByLdapUrl takes the E_DS URL as it stands but answers CertificateCandidate
// (serial, CN, validity, no certificate), and GetCertificate(ldapUrl) gives one certificate per
// URL, which would mean rewriting AR's LDAP filter once per serial. A search finds every
// certificate of the organisation (its other units', expired ones), so only those whose serial
// the E_DS lists are kept. The usual E_DS lists the two the answers already gave (one to
// encrypt to, one to sign with), and then nothing more is asked.

import { readCertificate } from '../../outbound/certificates.js';
import type { CommunicationParty } from '../addressRegister.js';
import type { AddressRegisterClient } from './client.js';
import type { ArParty } from './communicationParty.js';

type PartyCertificates = Pick<CommunicationParty, 'encryptionCertificate' | 'encryptionCertificates' | 'signingCertificate' | 'previousSigningCertificates'>;

export async function listedCertificates(client: AddressRegisterClient, ar: ArParty, now: Date): Promise<PartyCertificates> {
  const { herId } = ar.party;
  const encryptionCertificate = await client.encryptionCertificate(herId);
  const signingCertificate = await client.signingCertificate(herId);
  const single = {
    ...(encryptionCertificate ? { encryptionCertificate } : {}),
    ...(signingCertificate ? { signingCertificate } : {}),
  };
  const answered = new Set([encryptionCertificate, signingCertificate].map(decimalSerialOf));
  if (!ar.certificateSerials.some((s) => !answered.has(s))) return single;
  // without an organisation number (a person) there is nothing to search by: the answers serve
  if (!ar.organisationNumber) return single;

  const listed = (pem: string) => ar.certificateSerials.includes(decimalSerialOf(pem) ?? '');
  const encryptionCertificates = (await client.searchEncryptionCertificates(ar.organisationNumber)).filter(listed);
  const otherSigning = (await client.searchSigningCertificates(ar.organisationNumber))
    .filter((pem) => listed(pem) && pem !== signingCertificate && notExpired(pem, now))
    .sort((a, b) => notBefore(b) - notBefore(a));
  // AR's own answer is the one signatures are checked with first; without one, the newest listed
  const [current, ...others] = [...new Set([...(signingCertificate ? [signingCertificate] : []), ...otherSigning])];
  return {
    ...(encryptionCertificate ? { encryptionCertificate } : {}),
    ...(encryptionCertificates.length > 0 ? { encryptionCertificates: [...new Set(encryptionCertificates)] } : {}),
    ...(current ? { signingCertificate: current } : {}),
    ...(others.length > 0 ? { previousSigningCertificates: others } : {}),
  };
}

/** The serial number in decimal, as the E_DS writes it (certificates carry it as bytes, shown in hex); undefined when unreadable. */
function decimalSerialOf(pem: string | undefined): string | undefined {
  if (!pem) return undefined;
  try {
    return BigInt(`0x${readCertificate(pem).serialNumber}`).toString(10);
  } catch {
    return undefined;
  }
}

/** Not past its notAfter (unreadable: expired); one not valid yet is kept, its signatures checked when they come. */
export function notExpired(pem: string, now: Date): boolean {
  try {
    return now <= readCertificate(pem).notAfter;
  } catch {
    return false;
  }
}

function notBefore(pem: string): number {
  try {
    return readCertificate(pem).notBefore.getTime();
  } catch {
    return 0;
  }
}
