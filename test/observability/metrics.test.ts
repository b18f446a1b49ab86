// The Prometheus metrics the gateway exposes on /metrics, read as a scraper reads them.
import { expect } from 'chai';
import { Metrics } from '../../src/observability/metrics.js';

describe('metrics', () => {
  it('counts each resend of an unacknowledged message', async () => {
    const metrics = new Metrics();
    const count = async () => Number(/^plo_gateway_transport_resends_total (\d+)$/m.exec((await metrics.text()).body)?.[1]);
    expect(await count()).to.equal(0);
    metrics.transportResent();
    metrics.transportResent();
    expect(await count()).to.equal(2);
  });
});
