// A client for NHN's CPPA register, REST (DESIGN §4.6, REFERENCE §5.1):
// `GET Agreements/HerIds/{myHerId}/{counterpartyHerId}` with `Accept: application/xml` gives the
// CPA two parties have, 404 that they have none; `GET Profiles/{herId}` a party's CPP. Whatever keeps the register from answering
// (network, timeout, another HTTP status) is `CppaUnavailable`: transient, never a verdict on a
// message.

export class CppaUnavailable extends Error {
  override readonly name = 'CppaUnavailable';
}

export interface CppaClientOptions {
  url: string;
  timeoutMs: number;
}

export class CppaClient {
  constructor(private readonly options: CppaClientOptions) {}

  /** The CPA's XML, or undefined when the two parties have no agreement. */
  agreement(myHerId: string, counterpartyHerId: string): Promise<Buffer | undefined> {
    return this.get(`Agreements/HerIds/${encodeURIComponent(myHerId)}/${encodeURIComponent(counterpartyHerId)}`);
  }

  /** The party's CPP (`config check --online` asks for our own), or undefined when it has none. */
  profile(herId: string): Promise<Buffer | undefined> {
    return this.get(`Profiles/${encodeURIComponent(herId)}`);
  }

  private async get(path: string): Promise<Buffer | undefined> {
    const url = `${this.options.url.replace(/\/+$/, '')}/${path}`;
    let response: Response;
    try {
      response = await fetch(url, { headers: { accept: 'application/xml' }, signal: AbortSignal.timeout(this.options.timeoutMs) });
    } catch (e) {
      const why = (e as Error).name === 'TimeoutError' ? `no answer within ${this.options.timeoutMs} ms` : 'it cannot be reached';
      throw new CppaUnavailable(`the CPPA register: ${why}`);
    }
    const body = Buffer.from(await response.arrayBuffer());
    if (response.status === 404) return undefined;
    if (!response.ok) throw new CppaUnavailable(`the CPPA register: HTTP ${response.status}`);
    return body;
  }
}
