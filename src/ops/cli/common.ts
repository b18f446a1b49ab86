// Shared by every command: configuration loading with readable failures, and output helpers.
import { type GatewayConfig, loadConfig } from '../../config/config.js';

/** Exit code 1 with one line per problem, as `config check` prints them. */
export function configOrExit(): GatewayConfig {
  const loaded = loadConfig();
  if (!loaded.ok) {
    for (const p of loaded.problems) console.error(p);
    process.exit(1);
  }
  return loaded.config;
}

/** A plain aligned table for people; `--json` output is for machines. */
export function printTable(rows: Record<string, unknown>[], columns: string[]): void {
  const cell = (v: unknown) => (v === null || v === undefined ? '' : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => v.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  console.log(line(columns));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const r of rows) console.log(line(columns.map((c) => cell(r[c]))));
}
