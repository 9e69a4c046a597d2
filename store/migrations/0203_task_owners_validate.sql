-- Check the rows that were there before 0201 (SHARE UPDATE EXCLUSIVE:
-- task writes go on meanwhile).
ALTER TABLE task_owners VALIDATE CONSTRAINT task_owners_task_fk;
