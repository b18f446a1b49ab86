// Bydel polygons (GeoJSON, WGS84) and where a point falls: inside a bydel, or outside every
// one, with the nearest bydel. Oslo kommune's polygons carry names only (`bnavn`), so names
// are matched to codes through a code list (SSB Klass 1168 / code list 3403).
import { bbox } from '@turf/bbox';
import { booleanPointInPolygon } from '@turf/boolean-point-in-polygon';
import { pointToPolygonDistance } from '@turf/point-to-polygon-distance';
import type { BBox, Feature, FeatureCollection, MultiPolygon, Polygon } from 'geojson';
import { MARKA } from '../bydeler.js';
import type { LonLat } from './projection.js';

export interface BydelArea {
  code: string;
  feature: Feature<Polygon | MultiPolygon>;
  bbox: BBox;
}

export type Placement = { kind: 'inside'; code: string } | { kind: 'outside'; nearest: string; distanceKm: number };

/** Property names that carry a six-digit bydel code, then those that carry a name. */
const CODE_PROPERTIES = ['bydel_no', 'bydelsnummer', 'bydelsnr', 'code', 'kode'];
const NAME_PROPERTIES = ['bnavn', 'bydel_name', 'bydelsnavn', 'navn', 'name'];

/** "Bydel St. Hanshaugen", "St.Hanshaugen" and "st. hanshaugen" are one name. */
const nameKey = (name: string) =>
  name
    .toLocaleLowerCase('nb')
    .replace(/^bydel\s+/, '')
    .replace(/[^\p{L}]/gu, '');

/** SSB Klass "code;name" lines (no header), e.g. the bydel list of classification 1168. */
export function parseCodeList(csv: string): Record<string, string> {
  const list: Record<string, string> = {};
  for (const line of csv.split(/\r?\n/)) {
    const [code, name] = line
      .replace(/^\uFEFF/, '')
      .split(';')
      .map((s) => s?.trim());
    if (code && name && /^\d{6}$/.test(code)) list[code] = name;
  }
  return list;
}

function codeOf(feature: Feature, index: number, byName: Map<string, string>): string {
  const props = feature.properties ?? {};
  for (const p of CODE_PROPERTIES) if (/^\d{6}$/.test(String(props[p] ?? ''))) return String(props[p]);
  const name = NAME_PROPERTIES.map((p) => props[p]).find((v) => typeof v === 'string' && v.trim() !== '');
  const code = typeof name === 'string' ? byName.get(nameKey(name)) : undefined;
  if (!code) throw new Error(`polygon ${index + 1} (${name ?? 'no name'}) matches no bydel in the code list`);
  return code;
}

/** Every Polygon/MultiPolygon feature, with its bydel code; anything else in the file is an error. */
export function parseBydelPolygons(geojson: string, codeList: Record<string, string>): BydelArea[] {
  const collection = JSON.parse(geojson) as FeatureCollection;
  if (collection.type !== 'FeatureCollection' || !Array.isArray(collection.features)) throw new Error('the polygon file is not a GeoJSON FeatureCollection');
  const byName = new Map(Object.entries(codeList).map(([code, name]) => [nameKey(name), code]));
  return collection.features.map((feature, i) => {
    const type = feature.geometry?.type;
    if (type !== 'Polygon' && type !== 'MultiPolygon')
      throw new Error(`polygon ${i + 1} is a ${type ?? 'feature without geometry'}, not a Polygon or MultiPolygon`);
    const box = bbox(feature);
    if (box[0] < -180 || box[2] > 180 || box[1] < -90 || box[3] > 90) throw new Error(`polygon ${i + 1} is not in WGS84 longitude/latitude (RFC 7946)`);
    return { code: codeOf(feature, i, byName), feature: feature as Feature<Polygon | MultiPolygon>, bbox: box };
  });
}

const inBox = ([lon, lat]: LonLat, b: BBox) => lon >= b[0] && lon <= b[2] && lat >= b[1] && lat <= b[3];

/**
 * A lower bound of the distance from a point to anything inside a box: degrees of latitude are
 * at least 110.5 km, degrees of longitude at least 111.3 km × cos of the largest latitude involved.
 */
function boxDistanceKm([lon, lat]: LonLat, b: BBox): number {
  const dLon = Math.max(b[0] - lon, 0, lon - b[2]);
  const dLat = Math.max(b[1] - lat, 0, lat - b[3]);
  const maxLat = (Math.max(Math.abs(lat), Math.abs(b[1]), Math.abs(b[3])) * Math.PI) / 180;
  return 0.99 * Math.hypot(dLat * 110.5, dLon * 111.3 * Math.cos(maxLat));
}

/**
 * Point-in-polygon with a bounding-box prefilter (most boxes are rejected with four comparisons).
 * A Marka polygon, where a file has one, is not a bydel: a point in it is placed like any point
 * outside every bydel, at its nearest bydel.
 */
export class BydelLocator {
  private readonly areas: BydelArea[];

  constructor(areas: BydelArea[]) {
    this.areas = areas.filter((a) => a.code !== MARKA);
    if (this.areas.length === 0) throw new Error('the polygon file has no bydel polygons');
  }

  place(p: LonLat): Placement {
    for (const a of this.areas) if (inBox(p, a.bbox) && booleanPointInPolygon(p, a.feature)) return { kind: 'inside', code: a.code };
    return this.nearest(p);
  }

  /** Exact distances only for the polygons whose box could still be nearer than the best so far. */
  private nearest(p: LonLat): Placement {
    const candidates = this.areas.map((a) => ({ a, bound: boxDistanceKm(p, a.bbox) })).sort((x, y) => x.bound - y.bound);
    let best = { code: candidates[0].a.code, distanceKm: Number.POSITIVE_INFINITY };
    for (const { a, bound } of candidates) {
      if (bound >= best.distanceKm) break;
      const d = pointToPolygonDistance(p, a.feature, { units: 'kilometers' });
      if (d < best.distanceKm) best = { code: a.code, distanceKm: Math.max(d, 0) };
    }
    return { kind: 'outside', nearest: best.code, distanceKm: best.distanceKm };
  }
}
