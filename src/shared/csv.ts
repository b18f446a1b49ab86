// One row of a delimited text file: cells may be double-quoted, and then hold the delimiter
// and doubled quotes. Both the postcode index (comma) and Kartverket's export (semicolon) use it.
export function splitDelimited(line: string, delimiter: ',' | ';'): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === delimiter) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}
