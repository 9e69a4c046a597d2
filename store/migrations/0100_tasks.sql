-- Durable tasks (package tasks, DESIGN.md section 5).
--
-- The tasks table is also the work queue: a worker claims rows with
-- FOR UPDATE SKIP LOCKED, holds a lease (lease_token, lease_expires_at)
-- extended by heartbeats, and every write of a worker is fenced by its
-- lease_token. A row whose lease expired is claimable again.
CREATE TABLE tasks (
	id               uuid PRIMARY KEY,
	root_id          uuid NOT NULL,
	parent_id        uuid REFERENCES tasks (id) ON DELETE CASCADE,
	-- parent_step and spawn_key name the parent's step that spawned this
	-- task and the child's key inside that step; together they make
	-- SpawnChild idempotent.
	parent_step      int,
	spawn_key        text,
	depth            int NOT NULL DEFAULT 0 CHECK (depth >= 0),
	kind             text NOT NULL CHECK (kind ~ '^[a-z0-9][a-z0-9_.:-]{0,99}$'),
	-- target is the resource the task changes ("guest/<id>"); at most one
	-- active task per target (tasks_one_active_per_target below).
	target           text CHECK (target IS NULL OR length(target) BETWEEN 1 AND 500),
	params           jsonb NOT NULL DEFAULT '{}',
	state            text NOT NULL DEFAULT 'pending'
	                 CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'canceling', 'canceled')),
	-- phase run executes the steps forward; phase undo runs the declared
	-- compensations backwards after a failure or a cancel (undo_cause).
	phase            text NOT NULL DEFAULT 'run' CHECK (phase IN ('run', 'undo')),
	undo_cause       text NOT NULL DEFAULT '' CHECK (undo_cause IN ('', 'failed', 'canceled')),
	step             int NOT NULL DEFAULT 0,
	step_name        text NOT NULL DEFAULT '',
	-- attempt counts the attempts started of the current step, including
	-- one in progress; a claim increments it, so a worker that dies in a
	-- step uses up an attempt too.
	attempt          int NOT NULL DEFAULT 0 CHECK (attempt >= 0),
	error            text NOT NULL DEFAULT '',
	failed_step      text NOT NULL DEFAULT '',
	cancel_requested boolean NOT NULL DEFAULT false,
	-- children_pending counts spawned children not yet ended; waiting is
	-- true while the task is parked until it reaches zero, and await_step
	-- is the step whose children must be checked before going on.
	children_pending int NOT NULL DEFAULT 0 CHECK (children_pending >= 0),
	waiting          boolean NOT NULL DEFAULT false,
	await_step       int,
	run_at           timestamptz NOT NULL DEFAULT now(),
	lease_owner      text,
	lease_token      bigint,
	lease_expires_at timestamptz,
	claims           int NOT NULL DEFAULT 0,
	-- watched_until is set by followers (Engine.Follow): until then every
	-- event of the task is announced with NOTIFY. Unwatched tasks do not
	-- notify, because NOTIFY serialises committing transactions.
	watched_until    timestamptz,
	-- event_seq is the sequence number of the task's last event; every
	-- event is written by the statement that bumps it, so a task's events
	-- are numbered 1, 2, 3... without gaps, in commit order.
	event_seq        bigint NOT NULL DEFAULT 0,
	created_at       timestamptz NOT NULL DEFAULT now(),
	updated_at       timestamptz NOT NULL DEFAULT now(),
	started_at       timestamptz,
	finished_at      timestamptz,
	CHECK ((parent_id IS NULL) = (spawn_key IS NULL)),
	CHECK ((parent_id IS NULL) = (parent_step IS NULL)),
	CHECK (jsonb_typeof(params) = 'object'),
	CONSTRAINT tasks_spawn_unique UNIQUE (parent_id, parent_step, spawn_key)
) WITH (fillfactor = 50);
-- Room on each page lets the step-by-step updates of a task be HOT (no
-- new index entries), which keeps the claim index small.

-- At most one active change task per resource, decided by the database.
CREATE UNIQUE INDEX tasks_one_active_per_target ON tasks (target)
	WHERE target IS NOT NULL AND state IN ('pending', 'running', 'canceling');

-- The claim query: ready rows in run_at order.
CREATE INDEX tasks_ready ON tasks (run_at)
	WHERE state IN ('pending', 'running', 'canceling') AND NOT waiting;

CREATE INDEX tasks_parent ON tasks (parent_id, parent_step) WHERE parent_id IS NOT NULL;
CREATE INDEX tasks_root ON tasks (root_id);
CREATE INDEX tasks_created ON tasks (created_at DESC, id DESC);
CREATE INDEX tasks_target ON tasks (target, created_at DESC) WHERE target IS NOT NULL;

-- Every claim takes a new token; writes of an older holder match no row.
CREATE SEQUENCE task_lease_token_seq;

-- One row per step (and per compensation) that ended at least one attempt:
-- its output, attempts and errors.
CREATE TABLE task_steps (
	task_id     uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
	phase       text NOT NULL CHECK (phase IN ('run', 'undo')),
	idx         int NOT NULL CHECK (idx >= 0),
	name        text NOT NULL,
	state       text NOT NULL CHECK (state IN ('succeeded', 'retrying', 'failed')),
	attempts    int NOT NULL,
	output      jsonb,
	error       text NOT NULL DEFAULT '',
	-- errors holds one {"attempt", "at", "error"} object per failed attempt.
	errors      jsonb NOT NULL DEFAULT '[]',
	started_at  timestamptz NOT NULL,
	finished_at timestamptz NOT NULL,
	PRIMARY KEY (task_id, phase, idx)
);

-- Every state change of a task, numbered per task (see tasks.event_seq).
-- Followers replay from a sequence number and are woken by NOTIFY.
CREATE TABLE task_events (
	task_id   uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
	seq       bigint NOT NULL,
	at        timestamptz NOT NULL DEFAULT now(),
	type      text NOT NULL,
	state     text NOT NULL,
	phase     text NOT NULL,
	step      int NOT NULL,
	step_name text NOT NULL DEFAULT '',
	attempt   int NOT NULL DEFAULT 0,
	error     text NOT NULL DEFAULT '',
	PRIMARY KEY (task_id, seq)
);
