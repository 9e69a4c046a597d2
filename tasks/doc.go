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
