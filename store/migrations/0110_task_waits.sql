-- Waiting steps (package tasks: Snooze, Step.WaitTimeout, Engine.Wake).
--
-- A step that waits for the machine snoozes: the task is released with
-- run_at in the future and the attempt the claim counted given back.
-- waiting_since is when the current step first snoozed (NULL when it is not
-- waiting); it bounds the wait (Step.WaitTimeout) and is cleared when the
-- step ends an attempt or the task moves to another step or phase, so with
-- waiting_since set, attempt 0 still means the step started. waiting_for is
-- what the step said it waits for.
--
-- wake_pending is set by Engine.Wake on a task a worker holds, so that a
-- wake arriving while the step runs (after it looked, before it snoozed)
-- is not lost: the snooze that follows runs again at once. Every write of
-- the worker clears it.
--
-- Constant defaults: no table rewrite. Engine.Wake finds the task by
-- tasks_one_active_per_target and its sub-tasks by tasks_parent, so no new
-- index is needed.
ALTER TABLE tasks
	ADD COLUMN waiting_since timestamptz,
	ADD COLUMN waiting_for text NOT NULL DEFAULT '',
	ADD COLUMN wake_pending boolean NOT NULL DEFAULT false;

-- message is free text of an event: for step_waiting, what the step waits
-- for.
ALTER TABLE task_events ADD COLUMN message text NOT NULL DEFAULT '';
