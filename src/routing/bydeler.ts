// Oslo's bydeler, code list 3403 (SSB Klass 1168).
export const BYDELER: Record<string, string> = {
  '030101': 'Gamle Oslo',
  '030102': 'Grünerløkka',
  '030103': 'Sagene',
  '030104': 'St. Hanshaugen',
  '030105': 'Frogner',
  '030106': 'Ullern',
  '030107': 'Vestre Aker',
  '030108': 'Nordre Aker',
  '030109': 'Bjerke',
  '030110': 'Grorud',
  '030111': 'Stovner',
  '030112': 'Alna',
  '030113': 'Østensjø',
  '030114': 'Nordstrand',
  '030115': 'Søndre Nordstrand',
  '030116': 'Sentrum',
  '030117': 'Marka',
};

export const SENTRUM = '030116';
export const MARKA = '030117';
export const ST_HANSHAUGEN = '030104';

export const isBydelCode = (code: string): boolean => Object.hasOwn(BYDELER, code);

export const bydelName = (code: string): string => BYDELER[code] ?? code;

/**
 * The bydel that serves residents of a geographic bydel. Sentrum has no administration of
 * its own: its residents are served by St. Hanshaugen (oslobyleksikon, Administrativ inndeling).
 * Marka is served by several neighbours depending on where in Marka, so it has no single answer.
 */
export function serviceBydel(code: string): string | undefined {
  if (code === SENTRUM) return ST_HANSHAUGEN;
  if (code === MARKA) return undefined;
  return isBydelCode(code) ? code : undefined;
}
