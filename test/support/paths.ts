// Where the shared standards and data live: beside the repository, never copied into it.
import { resolve } from 'node:path';

export const SHARED = resolve(process.env.GATEWAY_SHARED_DIR ?? resolve(process.cwd(), '../shared'));
export const SCHEMA_DIR = resolve(process.env.GATEWAY_SCHEMA_DIR ?? resolve(SHARED, 'standards/xsd'));
export const SAMPLES = resolve(SHARED, 'standards/samples');
export const POSTCODE_INDEX = resolve(SHARED, 'data/DERIVED_oslo_postnr_bydel_estimate.csv');
export const ADDRESS_REGISTER = resolve(process.cwd(), 'config/address-register.example.json');
/** The demo bydeler's encryption pair: its certificate is every Oslo service's in the example register. */
export const DEMO_BYDEL_ENCRYPTION = {
  keyFile: resolve(process.cwd(), 'config/demo-keys/bydel-encryption-key.pem'),
  certFile: resolve(process.cwd(), 'config/demo-keys/bydel-encryption-cert.pem'),
};
