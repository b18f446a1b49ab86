// `report overtid --format html`: one self-contained page (no CDN, no external file: hospital
// networks are closed) with the per-bydel table, the indicators beside Helsedirektoratet's national
// figures, and three charts drawn by Chart.js, whose UMD bundle is inlined from node_modules:
// overliggerdøgn per bydel, the answer-time distribution and the weekly trend.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { NATIONAL, NATIONAL_NOTICES_2019_2020, NATIONAL_SOURCE } from '../tracking/nationalFigures.js';
import { type LedgerEntry, NATIONAL_COLUMNS, type OvertidRow, weeklyDogn } from '../tracking/overtid.js';

/** The answer-time bins of the distribution chart, in working minutes (upper bounds, inclusive). */
export const ANSWER_BINS = [30, 60, 120, 240, 480] as const;

export function answerHistogram(entries: LedgerEntry[]): { label: string; count: number }[] {
  const labels = ['≤ 30 min', '31–60 min', '61–120 min', '2–4 t', '4–8 t', '> 8 t'];
  const counts = labels.map(() => 0);
  for (const e of entries) {
    if (e.answerWorkingMs === null) continue;
    const minutes = Math.round(e.answerWorkingMs / 60000);
    const bin = ANSWER_BINS.findIndex((upper) => minutes <= upper);
    counts[bin === -1 ? labels.length - 1 : bin] += 1;
  }
  return [...labels.map((label, i) => ({ label, count: counts[i] })), { label: 'ikke besvart', count: entries.filter((e) => e.answeredAt === null).length }];
}

const esc = (s: unknown) => String(s ?? '').replace(/[&<>"']/g, (c) => `&${{ '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": '#39' }[c]};`);
/** JSON inside a <script> element: no `<` can close it. */
const scriptJson = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c');

function chartLibrary(): string {
  const main = createRequire(import.meta.url).resolve('chart.js');
  return readFileSync(join(dirname(main), 'chart.umd.min.js'), 'utf8');
}

const TABLE: [keyof OvertidRow | 'bydelName', string][] = [
  ['bydelName', 'Bydel'],
  ['notices', 'Meldinger'],
  ['carriedOver', 'Fra før perioden'],
  ['candidateDogn', 'Kandidatdøgn'],
  ['payableDogn', 'Betalbare døgn'],
  ['unsettledDogn', 'Besvart, ikke avklart'],
  ['preconditionsMissing', 'Vilkår mangler'],
  ['preconditionsUnknown', 'Vilkår ukjent'],
  ['unanswered', 'Ubesvart'],
  ['answeredWithinDeadline', 'Besvart innen frist'],
  ['medianAnswerWorkingMinutes', 'Median svartid (min)'],
  ['p90AnswerWorkingMinutes', 'P90 svartid (min)'],
];

const INDICATORS: [keyof OvertidRow, string][] = [
  ['sentDayPct', 'Sendt 08–16 (%)'],
  ['sentEveningPct', 'Sendt 16–24 (%)'],
  ['sentNightPct', 'Sendt 00–08 (%)'],
  ['avmeldtPct', 'Avmeldt (%)'],
  ['discharged24hPct', 'Utskrevet innen 24 t (%)'],
  ['discharged2to7dPct', 'Utskrevet 2–7 d (%)'],
  ['discharged8to30dPct', 'Utskrevet 8–30 d (%)'],
  ['dischargedOver30dPct', 'Utskrevet > 30 d (%)'],
  ['diedPct', 'Døde (%)'],
  ['answeredWithinDeadlinePct', 'Besvart innen frist (%)'],
];

type NamedRow = OvertidRow & { bydelName: string };

export function toHtmlReport(rows: NamedRow[], lines: { entries: LedgerEntry[]; carriedOver: LedgerEntry[] }, from: string, to: string): string {
  const bydeler = rows.filter((r) => r.bydel !== 'alle');
  const data = {
    dogn: {
      labels: bydeler.map((r) => r.bydelName),
      payable: bydeler.map((r) => r.payableDogn),
      unsettled: bydeler.map((r) => r.unsettledDogn),
      notPayable: bydeler.map((r) => r.candidateDogn - r.payableDogn - r.unsettledDogn),
    },
    answers: answerHistogram(lines.entries),
    weekly: weeklyDogn([...lines.entries, ...lines.carriedOver]),
  };
  const head = TABLE.map(([, label]) => `<th>${esc(label)}</th>`).join('');
  const body = rows.map((r) => `<tr>${TABLE.map(([c]) => `<td>${esc(r[c])}</td>`).join('')}</tr>`).join('\n');
  const nationalOf = (c: keyof OvertidRow) => {
    const key = NATIONAL_COLUMNS[c];
    return key ? NATIONAL[key] : undefined;
  };
  const indicatorHead = `<th>Indikator</th>${rows.map((r) => `<th>${esc(r.bydelName)}</th>`).join('')}<th>Nasjonalt</th>`;
  const indicatorBody = INDICATORS.map(([c, label]) => {
    const n = nationalOf(c);
    const national = n ? `<td title="${esc(n.source)}">${esc(n.percent)}</td>` : '<td>–</td>';
    return `<tr><th scope="row">${esc(label)}</th>${rows.map((r) => `<td>${esc(r[c] ?? '–')}</td>`).join('')}${national}</tr>`;
  }).join('\n');
  const sources = Object.values(NATIONAL)
    .map((n) => `<li>${esc(n.source)}</li>`)
    .join('');
  return `<!doctype html>
<html lang="no">
<head>
<meta charset="utf-8">
<title>Overtid ${esc(from)}–${esc(to)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:2rem}
figure{margin:0}canvas{width:100%;height:320px}
small,.sources{color:#555;font-size:.85em}
</style>
</head>
<body>
<h1>Overliggerdøgn ${esc(from)} – ${esc(to)}</h1>
<p><small>Kandidatdøgn telles fra og med dagen pasienten er utskrivningsklar og bydelen varslet, til utskrivning, avmelding eller død (den dagen ikke medregnet), innenfor perioden. Betalbare: vilkårene vist, og bydelen har ikke svart, eller før datoen en saksbehandler har registrert at bydelen tilbød plass.</small></p>
<table id="ledger">
<tr>${head}</tr>
${body}
</table>
<div class="charts">
<figure><figcaption>Overliggerdøgn per bydel</figcaption><canvas id="chart-dogn"></canvas></figure>
<figure><figcaption>Svartid (arbeidstid) fra melding til svar</figcaption><canvas id="chart-answers"></canvas></figure>
<figure><figcaption>Døgn per uke (mandag)</figcaption><canvas id="chart-weekly"></canvas></figure>
</div>
<h2>Indikatorer og nasjonale tall</h2>
<table id="indicators">
<tr>${indicatorHead}</tr>
${indicatorBody}
</table>
<p><small>Nasjonalt: ${esc(NATIONAL_SOURCE)}; ${esc(NATIONAL_NOTICES_2019_2020.source)} (≈ ${esc(NATIONAL_NOTICES_2019_2020.derivedPerYear)} i året).</small></p>
<ul class="sources">${sources}</ul>
<script type="application/json" id="report-data">${scriptJson(data)}</script>
<script>${chartLibrary()}</script>
<script>
(function () {
  var data = JSON.parse(document.getElementById('report-data').textContent);
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  var stacked = { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } };
  new Chart(document.getElementById('chart-dogn'), {
    type: 'bar',
    data: { labels: data.dogn.labels, datasets: [
      { label: 'Betalbare', data: data.dogn.payable, backgroundColor: '#b2182b' },
      { label: 'Besvart, ikke avklart', data: data.dogn.unsettled, backgroundColor: '#ef8a62' },
      { label: 'Ikke betalbare', data: data.dogn.notPayable, backgroundColor: '#999999' }
    ] },
    options: { scales: stacked }
  });
  new Chart(document.getElementById('chart-answers'), {
    type: 'bar',
    data: { labels: data.answers.map(function (b) { return b.label; }), datasets: [
      { label: 'Meldinger', data: data.answers.map(function (b) { return b.count; }), backgroundColor: '#2166ac' }
    ] },
    options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
  });
  new Chart(document.getElementById('chart-weekly'), {
    type: 'bar',
    data: { labels: data.weekly.map(function (w) { return w.week; }), datasets: [
      { label: 'Kandidatdøgn', data: data.weekly.map(function (w) { return w.candidateDogn; }), backgroundColor: '#999999' },
      { label: 'Betalbare døgn', data: data.weekly.map(function (w) { return w.payableDogn; }), backgroundColor: '#b2182b' }
    ] },
    options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
  });
  document.documentElement.setAttribute('data-charts', 'rendered');
})();
</script>
</body>
</html>
`;
}
