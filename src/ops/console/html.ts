// The console's HTML: escaped by construction (every value goes through `esc` or the `html` tag),
// one stylesheet served by the gateway itself (no CDN, no external font: closed hospital
// networks), no script. Forms and links only, so every page works with the keyboard.
import type { Principal } from '../users.js';

/** HTML that is already escaped. */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

type Part = Html | string | number | boolean | null | undefined | Part[];

export function esc(v: string): string {
  return v.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);
}

const render = (p: Part): string => {
  if (p === null || p === undefined || p === false) return '';
  if (p instanceof Html) return p.text;
  if (Array.isArray(p)) return p.map(render).join('');
  return esc(String(p));
};

/** Template tag: interpolated values are escaped, Html values and arrays of them are not. */
export function html(strings: TemplateStringsArray, ...values: Part[]): Html {
  let out = strings[0];
  values.forEach((v, i) => {
    out += render(v) + strings[i + 1];
  });
  return new Html(out);
}

export const raw = (s: string) => new Html(s);

/** A table of rows; `cells` turns a row into its cells, in the order of `headers`. */
export function table<T>(caption: string, headers: string[], rows: T[], cells: (r: T) => Part[], empty = 'none'): Html {
  if (rows.length === 0) return html`<p class="empty">${caption}: ${empty}</p>`;
  return html`<table><caption>${caption}</caption><thead><tr>${headers.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead><tbody>${rows.map(
    (r) => html`<tr>${cells(r).map((c) => html`<td>${c}</td>`)}</tr>`,
  )}</tbody></table>`;
}

/** A POST form with the CSRF token; `fields` are its inputs, `label` the button. */
export function postForm(action: string, csrf: string | undefined, label: string, fields: Part = '', className = ''): Html {
  return html`<form method="post" action="${action}" class="${className}">${csrf ? html`<input type="hidden" name="_csrf" value="${csrf}">` : ''}${fields}<button type="submit">${label}</button></form>`;
}

export interface PageContext {
  who: Principal;
  /** absent when the request came with a bearer token (no cookie, nothing to forge) */
  csrf?: string;
}

const NAV: [string, string][] = [
  ['/console', 'Overview'],
  ['/console/dlq', 'Dead letters'],
  ['/console/held', 'Held messages'],
  ['/console/waiting', 'Waiting for the kommune'],
  ['/console/overtid', 'Overtid'],
];

export function page(title: string, ctx: PageContext | undefined, body: Part, current = ''): string {
  const nav = ctx
    ? html`<nav aria-label="Console"><ul>${NAV.map(([href, label]) => html`<li><a href="${href}"${raw(href === current ? ' aria-current="page"' : '')}>${label}</a></li>`)}</ul>
<div class="who">${ctx.who.name} (${ctx.who.role}${ctx.who.payloadAccess ? ', payload access' : ''})${ctx.csrf ? postForm('/console/logout', ctx.csrf, 'Log out', '', 'inline') : ''}</div></nav>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} · plo-gateway</title><link rel="stylesheet" href="/console/style.css"></head>
<body><a class="skip" href="#main">Skip to content</a><header><p class="brand">plo-gateway ops console</p>${render(nav)}</header>
<main id="main" tabindex="-1"><h1>${esc(title)}</h1>${render(body)}</main></body></html>`;
}

export const STYLE = `
:root{--fg:#1b1b1b;--muted:#555;--bg:#fff;--line:#ccc;--accent:#0b5394;--bad:#a40000;--warn:#8a5a00;--ok:#1e6b1e}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{background:#eef2f7;border-bottom:1px solid var(--line);padding:.4rem 1rem}.brand{margin:0;font-weight:600}
nav{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:center}nav ul{list-style:none;margin:0;padding:0;display:flex;gap:1rem;flex-wrap:wrap}
a{color:var(--accent)}a[aria-current=page]{font-weight:700;text-decoration:none}
a:focus,button:focus,input:focus,select:focus,main:focus{outline:3px solid #f5a623;outline-offset:2px}
main{padding:1rem;max-width:90rem}h1{font-size:1.4rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;width:100%}caption{text-align:left;font-weight:600;padding:.2rem 0}
th,td{border:1px solid var(--line);padding:.25rem .5rem;text-align:left;vertical-align:top}th{background:#f4f4f4}
dl.fields{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dl.fields dt{color:var(--muted)}dl.fields dd{margin:0}
form{margin:.5rem 0;display:flex;gap:.5rem;align-items:flex-end;flex-wrap:wrap}form.inline{display:inline-flex;margin:0 0 0 1rem}
label{display:flex;flex-direction:column;font-size:.9rem}input,select,button{font:inherit;padding:.25rem .4rem}
button{background:var(--accent);color:#fff;border:1px solid var(--accent);border-radius:3px;cursor:pointer}
.bad{color:var(--bad);font-weight:600}.warn{color:var(--warn);font-weight:600}.ok{color:var(--ok);font-weight:600}
.empty{color:var(--muted)}.result{padding:.6rem .8rem;border:2px solid var(--ok)}.result.failed{border-color:var(--bad)}
pre{white-space:pre-wrap;word-break:break-all;background:#f7f7f7;border:1px solid var(--line);padding:.5rem;max-height:40rem;overflow:auto}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#fff;padding:.3rem;z-index:2}
.actions{border-top:1px solid var(--line);margin-top:1rem;padding-top:.5rem}
`;
