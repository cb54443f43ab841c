-- Rollback evidence of step 6, T6/T7 addenda patch (seed 002 §70.1 step 6):
-- "DELETE coverage → DOTs → domains (reverse FK order); revert doc 24/25 patches (KB revision rollback)."
DELETE FROM dot_coverage_required WHERE domain_code LIKE 'governance.%';
DELETE FROM dot_tools WHERE domain_code LIKE 'governance.%';
DELETE FROM dot_domains WHERE code LIKE 'governance.%';

-- The T7 finding types registered by the step.
DELETE FROM finding_type_registry WHERE domain = 'governance';

-- KB revision rollback: make the previous revision current again, then drop the addenda revision.
UPDATE kb_documents d
SET current_revision = p.revision, body = p.body, updated_at = p.created_at
FROM kb_document_revisions c, kb_document_revisions p
WHERE d.doc_no IN (24, 25)
  AND c.doc_no = d.doc_no AND c.revision = d.current_revision
  AND c.change_note = 'T6/T7 addenda patch (gcos step 6, seed 002 §70.1)'
  AND p.doc_no = d.doc_no AND p.revision = c.revision - 1;
DELETE FROM kb_document_revisions
WHERE doc_no IN (24, 25) AND change_note = 'T6/T7 addenda patch (gcos step 6, seed 002 §70.1)';
