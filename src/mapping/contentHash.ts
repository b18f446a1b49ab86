// A hash of the business content that ignores what a resend changes (MsgId, GenDate and the
// formatting), so that the same message sent again under a new MsgId can be recognised.
import { createHash } from 'node:crypto';

const VOLATILE = /<((?:\w+:)?(?:MsgId|GenDate))>[^<]*<\/\1>/g;

export function contentHash(businessXml: string): string {
  const stable = businessXml
    .replace(/^<\?xml[^>]*\?>/, '')
    .replace(VOLATILE, '')
    .replace(/>\s+</g, '><')
    .trim();
  return createHash('sha256').update(stable).digest('hex');
}
