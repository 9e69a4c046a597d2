// Package tasks is rackcloud's durable task engine (DESIGN.md section 5).
//
// Every change to a resource is a task: a kind declares ordered steps
// (Kind, Step), each a StepFunc that returns an output. A step may spawn
// sub-tasks (StepContext.SpawnChild); the task moves on to its next step
// only once they all ended, and a failed child fails the step. The engine
// records in PostgreSQL (store/migrations/0100_tasks.sql) each task's
// parameters, current step and attempt, each step's output, attempts and
// errors, and every state change as a numbered event, so that after a
// crash any replica resumes a task at its recorded step.
//
// # Running
//
// Workers claim ready tasks with FOR UPDATE SKIP LOCKED, woken by
// LISTEN/NOTIFY and a poll, and hold a lease extended by heartbeats
// (Config.LeaseTTL). Every write of a worker is fenced by its lease token:
// a worker that lost its lease cannot record anything. A task whose worker
// died is claimable again once its lease expires. Steps are idempotent by
// contract; StepContext.IdempotencyKey is stable across attempts and
// replicas.
//
// A failed step is retried with exponential backoff up to its MaxAttempts
// (3 by default; a worker that dies in a step uses up an attempt too);
// then the task fails with the step, the error and the attempts recorded.
// On failure or cancel (Engine.Cancel, which also cancels descendants),
// the Undo functions of the steps that started run, last first, and the
// task ends failed or canceled. At most one active task per target is
// enforced by a unique index.
//
// # Waiting for the machine
//
// A step that waits for something outside (the agent's inventory report,
// a first boot) returns Snooze(d, reason) while it has not happened. The
// task is given back at once, holding no worker, with run_at d ahead; the
// attempt the claim counted is given back in the same fenced write, and no
// retry or failure is recorded, so a step may snooze any number of times
// with MaxAttempts 1. The task's Info shows WaitingFor (the reason) and
// WaitingSince (the step's first snooze, kept in tasks.waiting_since and
// also returned by StepContext.WaitingSince); both are cleared when the
// step ends an attempt or the task moves to another step or phase.
// A step_waiting event (Event.Message is the reason) is appended on the
// step's first snooze and when the reason changes, not on every snooze,
// so that a long wait does not flood task_events.
//
// Engine.Wake(target), called by the endpoint that stores the awaited
// event (in its transaction), makes the snoozing task on target (and its
// snoozing sub-tasks) claimable now and notifies the workers. It leaves
// alone a task in a retry's backoff (a wake is news for a waiting step,
// not a reason to retry a failing one early) and a task parked for its
// children. A task whose step is running when the wake comes is marked,
// so that if the step snoozes next (it looked before the event was
// stored) it runs again at once: no wake is lost. Since the task holds no
// lease while it snoozes, an engine stopping or dying does not disturb it;
// any replica resumes it.
//
// Step.WaitTimeout bounds a wait: a step that has been snoozing that long
// since its first snooze is not run again but fails for good with an error
// wrapping ErrWaitTimeout ("waited 5m0s for agent report"), and the task
// compensates as for any failed step, the waiting step's Undo included.
// Snoozes are cut so that the step is looked at again when its timeout is
// due. The database's clock measures waits. A cancel ends a wait at once.
//
// # Why not River
//
// riverqueue/river is a fine queue, but its rescue of a job whose worker
// died is by age only (RescueStuckJobsAfter, checked every 30 s by the
// leader, not configurable): with no heartbeat, a long step (installing an
// OS) is either rescued while still running or a dead worker's job waits
// for the long timeout. Its resumable steps record progress only when an
// attempt ends, and sub-task trees, per-step outputs, compensation and a
// per-resource unique constraint on active tasks would all live in tables
// of our own anyway. So the tasks table is the queue; claiming is one
// statement, like River's.
//
// # Events
//
// Every transition appends to task_events in the statement that makes it,
// numbered per task (Event.Seq); Follow replays from a sequence number and
// streams new events (for server-sent events). Metrics
// (rackcloud_tasks_*) are registered on Config.Registerer.
//
// # Retention
//
// Engines with workers delete task trees whose root ended more than
// Config.Retention ago (30 days by default; Prune), with their steps,
// events and API owner rows, in batches that skip rows other transactions
// hold. A tree with a task still active is kept whatever its root's age.
package tasks
