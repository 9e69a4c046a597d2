-- A task's owner row goes with the task when ended tasks are pruned.
-- NOT VALID keeps this migration from scanning task_owners while it holds
-- its locks; 0203 validates the existing rows under a weaker lock.
DELETE FROM task_owners o WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = o.task_id);
ALTER TABLE task_owners ADD CONSTRAINT task_owners_task_fk
	FOREIGN KEY (task_id) REFERENCES tasks (id) ON DELETE CASCADE NOT VALID;
