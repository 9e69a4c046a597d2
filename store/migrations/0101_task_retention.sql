-- Pruning ended task trees by age (tasks.Engine.Prune): roots that ended,
-- oldest first.
CREATE INDEX tasks_prunable ON tasks (finished_at) WHERE parent_id IS NULL AND finished_at IS NOT NULL;
