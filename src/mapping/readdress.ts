// Rewrites MsgHead/MsgInfo/Receiver to the bydel (level 1) and its service (level 2).
// xmldom is used because it serialises the rest of the document untouched; the input has
// already passed the safe parser (no DOCTYPE, bounded size), and xmldom never expands entities.
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';
import { NS } from './model.js';

export interface NewReceiver {
  level1: { name: string; herId: string };
  level2: { name: string; herId: string };
}

const HER_TYPE = { V: 'HER', DN: 'HER-id', S: '2.16.578.1.12.4.1.1.9051' };

export function rewriteReceiver(msgHeadXml: string, to: NewReceiver): string {
  const doc = new DOMParser({ errorHandler: () => undefined }).parseFromString(msgHeadXml, 'text/xml');
  const msgInfo = childNs(doc.documentElement, 'MsgInfo');
  const receiver = msgInfo && childNs(msgInfo, 'Receiver');
  if (!receiver) throw new Error('MsgHead has no MsgInfo/Receiver');
  const prefix = receiver.prefix ? `${receiver.prefix}:` : '';
  const el = (name: string) => doc.createElementNS(NS.msgHead, prefix + name);

  const organisation = (level: { name: string; herId: string }) => {
    const org = el('Organisation');
    const name = el('OrganisationName');
    name.appendChild(doc.createTextNode(level.name));
    const ident = el('Ident');
    const id = el('Id');
    id.appendChild(doc.createTextNode(level.herId));
    const typeId = el('TypeId');
    for (const [k, v] of Object.entries(HER_TYPE)) typeId.setAttribute(k, v);
    ident.appendChild(id);
    ident.appendChild(typeId);
    org.appendChild(name);
    org.appendChild(ident);
    return org;
  };

  const top = organisation(to.level1);
  top.appendChild(organisation(to.level2));
  // ComMethod (optional, first) is kept; the old Organisation is replaced.
  const old = childNs(receiver, 'Organisation');
  if (old) receiver.replaceChild(top, old);
  else receiver.appendChild(top);
  return new XMLSerializer().serializeToString(doc);
}

function childNs(parent: Element, localName: string): Element | undefined {
  for (let n = parent.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === 1 && (n as Element).localName === localName && (n as Element).namespaceURI === NS.msgHead) {
      return n as Element;
    }
  }
  return undefined;
}
