// The validate stage: the XSD first (a document that fails it is T02 whatever else is wrong),
// then the business rules. AppRecs have no business rules beyond their schema.
import type { ParsedMessage, StageResult } from '../mapping/model.js';
import { checkRules } from './rules.js';
import type { SchemaSet } from './schemas.js';

export function validateMessage(parsed: ParsedMessage, schemas: SchemaSet): StageResult<void> {
  const valid = schemas.validate(parsed.businessXml);
  if (!valid.ok || parsed.doc.kind === 'apprec') return valid;
  return checkRules(parsed.doc);
}
