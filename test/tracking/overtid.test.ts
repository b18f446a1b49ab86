// The overtid report's arithmetic, without a store (the ledger on a scripted week is in
// overtid.int.test.ts).
import { expect } from 'chai';
import { percentile } from '../../src/tracking/overtid.js';

describe('nearest-rank percentile', () => {
  it('takes a value that occurred', () => {
    expect(percentile([], 50)).to.equal(null);
    expect(percentile([10, 20, 30, 40], 50)).to.equal(20);
    expect(percentile([10, 20, 30, 40], 90)).to.equal(40);
    expect(percentile([7], 90)).to.equal(7);
  });
});
