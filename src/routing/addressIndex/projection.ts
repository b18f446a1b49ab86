// Address coordinates → WGS84 longitude/latitude, the system of the bydel polygons (GeoJSON).
// Kartverket publishes EUREF89 (ETRS89): UTM zone 33N (EPSG:25833) by default, other UTM zones
// and geographic coordinates on request. ETRS89 and WGS84 differ by well under a metre in
// Norway, far less than any distance that matters for a bydel border, so no datum shift.
import proj4 from 'proj4';

const utm = (zone: number) => `+proj=utm +zone=${zone} +ellps=GRS80 +towgs84=0,0,0,0,0,0,0 +units=m +no_defs`;
const GEOGRAPHIC = '+proj=longlat +ellps=GRS80 +towgs84=0,0,0,0,0,0,0 +no_defs';

/** EUREF89 UTM zones (2D and with NN2000 heights) and geographic; what Geonorge offers for Norway. */
const DEFINITIONS: Record<number, string> = {
  25832: utm(32),
  25833: utm(33),
  25835: utm(35),
  5972: utm(32),
  5973: utm(33),
  5975: utm(35),
  4258: GEOGRAPHIC,
  4326: GEOGRAPHIC,
};

export const DEFAULT_EPSG = 25833;
export const isSupportedEpsg = (epsg: number): boolean => Object.hasOwn(DEFINITIONS, epsg);

export type LonLat = [number, number];
export type ToWgs84 = (east: number, north: number) => LonLat;

const converters = new Map<number, ToWgs84>();

/** A converter per coordinate system, made once: proj4 parses the definition on creation. */
export function toWgs84(epsg: number): ToWgs84 {
  const known = converters.get(epsg);
  if (known) return known;
  const definition = DEFINITIONS[epsg];
  if (!definition) throw new Error(`EPSG:${epsg} is not supported (supported: ${Object.keys(DEFINITIONS).join(', ')})`);
  // In geographic files Kartverket's "Nord" is the latitude and "Øst" the longitude.
  const projection = definition === GEOGRAPHIC ? undefined : proj4(definition, 'EPSG:4326');
  const converter: ToWgs84 = projection ? (east, north) => projection.forward([east, north]) as LonLat : (east, north) => [east, north];
  converters.set(epsg, converter);
  return converter;
}
