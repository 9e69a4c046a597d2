package tasks

// All SQL of the package, in one place. Tables: store/migrations/0100_tasks.sql
// and 0110_task_waits.sql.

// Notification channels. Payloads: the task's kind on chanWake (a task of
// that kind may be claimable), "<task id> <event type>" on chanEvents.
const (
	chanWake   = "rackcloud_tasks"
	chanEvents = "rackcloud_task_events"
)

// activeStates is the SQL list of non-terminal states.
const activeStates = `('pending', 'running', 'canceling')`

// taskColumns are read into taskRow.
const taskColumns = `id::text AS id, root_id::text AS root_id, parent_id::text AS parent_id, parent_step, spawn_key,
	depth, kind, target, params, state, phase, undo_cause, step, step_name, attempt, error, failed_step,
	cancel_requested, children_pending, waiting, await_step, run_at, lease_token, claims, event_seq,
	created_at, updated_at, started_at, finished_at, waiting_since, waiting_for`

const sqlSubmit = `
WITH v AS (SELECT gen_random_uuid() AS id),
ins AS (
	INSERT INTO tasks (id, root_id, kind, target, params, step_name, event_seq)
	SELECT v.id, v.id, $1, $2, $3, $4, 1 FROM v
	ON CONFLICT (target) WHERE target IS NOT NULL AND state IN ` + activeStates + ` DO NOTHING
	RETURNING *
), e AS (
	INSERT INTO task_events (task_id, seq, type, state, phase, step, step_name)
	SELECT id, 1, 'created', 'pending', 'run', 0, step_name FROM ins
), n AS (
	SELECT pg_notify('` + chanWake + `', kind) FROM ins
)
SELECT ` + taskColumns + `, (SELECT count(*) FROM n) AS notified FROM ins`

// sqlActiveOnTarget finds the task holding a target (after a conflict).
const sqlActiveOnTarget = `SELECT id::text FROM tasks WHERE target = $1 AND state IN ` + activeStates

// sqlClaim leases up to $2 ready tasks of kinds $1 to owner $3 for $4 ms,
// counts an attempt of each one's current step and records a "started"
// event. fresh says whether the task was queued (not taken from a dead
// worker), for the pickup-latency metric; snoozed is how many seconds its
// step has been snoozing (0 when it is not), by the database's clock.
const sqlClaim = `
WITH c AS (
	SELECT id, lease_token IS NULL AS fresh, extract(epoch FROM now() - run_at) AS waited,
		coalesce(extract(epoch FROM now() - waiting_since), 0) AS snoozed
	FROM tasks
	WHERE state IN ` + activeStates + ` AND NOT waiting AND run_at <= now()
	  AND (lease_expires_at IS NULL OR lease_expires_at < now())
	  AND kind = ANY($1::text[])
	ORDER BY run_at
	LIMIT $2
	FOR UPDATE SKIP LOCKED
), u AS (
	UPDATE tasks t SET
		state = CASE WHEN t.state = 'pending' THEN 'running' ELSE t.state END,
		attempt = t.attempt + 1,
		claims = t.claims + 1,
		lease_owner = $3,
		lease_token = nextval('task_lease_token_seq'),
		lease_expires_at = now() + $4 * interval '1 millisecond',
		wake_pending = false,
		started_at = coalesce(t.started_at, now()),
		updated_at = now(),
		event_seq = t.event_seq + 1
	FROM c WHERE t.id = c.id
	RETURNING t.*, c.fresh, c.waited, c.snoozed
), e AS (
	INSERT INTO task_events (task_id, seq, type, state, phase, step, step_name, attempt)
	SELECT id, event_seq, 'started', state, phase, step, step_name, attempt FROM u
), n AS (
	SELECT pg_notify('` + chanEvents + `', id::text || ' started') FROM u WHERE watched_until > now()
)
SELECT ` + taskColumns + `, fresh, waited, snoozed, (SELECT count(*) FROM n) AS notified FROM u`

// sqlApply writes one plan of the state machine, fenced by the lease: the
// task row, the end of a step attempt, the events, and on a terminal state
// the parent's count of pending children (waking it at zero).
//
// A release is due at once, whatever its delay, when a cancel of a task
// running forward came in meanwhile (it then compensates without waiting),
// and for a snooze when Engine.Wake came while the step ran (wake_pending).
//
//	$1 id, $2 lease token, $3 state, $4 phase, $5 undo_cause, $6 step,
//	$7 step_name, $8 attempt, $9 error, $10 failed_step, $11 await_step,
//	$12 park, $13 release, $14 terminal, $15 delay (ms), $16 lease ttl (ms),
//	$17 record phase ('' = no record), $18 record idx, $19 record name,
//	$20 record state, $21 record attempts, $22 output, $23 record error,
//	$24 record started_at, $25.. $31 event arrays, $32 last event type,
//	$33 snoozing, $34 waiting_for, $35 event messages.
const sqlApply = `
WITH t AS (
	UPDATE tasks SET
		state = $3, phase = $4, undo_cause = $5, step = $6, step_name = $7, attempt = $8,
		error = $9, failed_step = $10, await_step = $11,
		waiting_since = CASE WHEN $33::boolean THEN coalesce(waiting_since, now()) END,
		waiting_for = $34,
		wake_pending = false,
		waiting = $12::boolean AND children_pending > 0,
		lease_owner = CASE WHEN $13::boolean OR $14::boolean OR ($12::boolean AND children_pending > 0) THEN NULL ELSE lease_owner END,
		lease_token = CASE WHEN $13::boolean OR $14::boolean OR ($12::boolean AND children_pending > 0) THEN NULL ELSE lease_token END,
		lease_expires_at = CASE WHEN $13::boolean OR $14::boolean OR ($12::boolean AND children_pending > 0) THEN NULL
			ELSE now() + $16 * interval '1 millisecond' END,
		run_at = CASE WHEN NOT $13::boolean THEN run_at
			WHEN (cancel_requested AND $4 = 'run') OR ($33::boolean AND wake_pending) THEN now()
			ELSE now() + $15 * interval '1 millisecond' END,
		finished_at = CASE WHEN $14::boolean THEN now() END,
		updated_at = now(),
		event_seq = event_seq + cardinality($25::text[])
	WHERE id = $1 AND lease_token = $2
	RETURNING id, parent_id, waiting, event_seq, kind, watched_until, run_at <= now() AS due
), s AS (
	INSERT INTO task_steps (task_id, phase, idx, name, state, attempts, output, error, errors, started_at, finished_at)
	SELECT t.id, $17, $18, $19, $20, $21, $22::jsonb, $23,
		CASE WHEN $23 = '' THEN '[]'::jsonb
		ELSE jsonb_build_array(jsonb_build_object('attempt', $21::int, 'at', now(), 'error', $23::text)) END,
		$24, now()
	FROM t WHERE $17 <> ''
	ON CONFLICT (task_id, phase, idx) DO UPDATE SET
		state = EXCLUDED.state,
		attempts = EXCLUDED.attempts,
		output = coalesce(EXCLUDED.output, task_steps.output),
		error = EXCLUDED.error,
		errors = task_steps.errors || EXCLUDED.errors,
		finished_at = EXCLUDED.finished_at
), e AS (
	INSERT INTO task_events (task_id, seq, type, state, phase, step, step_name, attempt, error, message)
	SELECT t.id, t.event_seq - cardinality($25::text[]) + ev.ord, ev.typ, ev.state, ev.phase, ev.step, ev.name, ev.attempt, ev.err, ev.msg
	FROM t, unnest($25::text[], $26::text[], $27::text[], $28::int[], $29::text[], $30::int[], $31::text[], $35::text[])
		WITH ORDINALITY AS ev(typ, state, phase, step, name, attempt, err, msg, ord)
), p AS (
	UPDATE tasks SET
		children_pending = tasks.children_pending - 1,
		waiting = tasks.waiting AND tasks.children_pending > 1,
		run_at = CASE WHEN tasks.waiting AND tasks.children_pending = 1 THEN now() ELSE tasks.run_at END,
		updated_at = now()
	FROM t WHERE $14::boolean AND tasks.id = t.parent_id
	RETURNING tasks.kind, tasks.children_pending
), n AS (
	SELECT pg_notify('` + chanWake + `', p.kind) FROM p WHERE p.children_pending = 0
	UNION ALL
	SELECT pg_notify('` + chanWake + `', t.kind) FROM t WHERE $13::boolean AND t.due
	UNION ALL
	SELECT pg_notify('` + chanEvents + `', t.id::text || ' ' || $32) FROM t WHERE $32 <> '' AND t.watched_until > now()
)
SELECT t.waiting, (SELECT count(*) FROM n) FROM t`

// sqlHeartbeat extends the leases this worker still holds.
const sqlHeartbeat = `
UPDATE tasks SET lease_expires_at = now() + $3 * interval '1 millisecond'
WHERE lease_owner = $1 AND lease_token = ANY($2::bigint[])
RETURNING lease_token, cancel_requested`

// sqlSpawn creates a child of a task held under lease $2, unless the step
// already spawned one under the same key; the parent then waits for it.
// Returns whether the parent was held, the new child's ID (NULL when it
// already existed) and the existing child's ID.
const sqlSpawn = `
WITH par AS (
	SELECT id, root_id, depth, cancel_requested FROM tasks
	WHERE id = $1 AND lease_token = $2
	FOR UPDATE
), v AS (SELECT gen_random_uuid() AS id),
ins AS (
	INSERT INTO tasks (id, root_id, parent_id, parent_step, spawn_key, depth, kind, target, params, step_name, event_seq)
	SELECT v.id, par.root_id, par.id, $3, $4, par.depth + 1, $5, $6, $7, $8, 1
	FROM par, v WHERE NOT par.cancel_requested
	ON CONFLICT (parent_id, parent_step, spawn_key) DO NOTHING
	RETURNING id, kind, step_name
), e AS (
	INSERT INTO task_events (task_id, seq, type, state, phase, step, step_name)
	SELECT id, 1, 'created', 'pending', 'run', 0, step_name FROM ins
), up AS (
	UPDATE tasks SET children_pending = children_pending + 1, updated_at = now()
	WHERE id = $1 AND EXISTS (SELECT 1 FROM ins)
	RETURNING 1
), n AS (
	SELECT pg_notify('` + chanWake + `', kind) FROM ins
)
SELECT
	(SELECT count(*) FROM par) AS held,
	coalesce((SELECT cancel_requested FROM par), false) AS canceled,
	(SELECT id::text FROM ins) AS created,
	(SELECT id::text FROM tasks WHERE parent_id = $1 AND parent_step = $3 AND spawn_key = $4) AS existing,
	(SELECT count(*) FROM up) + (SELECT count(*) FROM n) AS writes`

// sqlCancel requests the cancel of task $1 and its descendants ($2 true),
// or of its descendants only ($2 false): every active task of the subtree
// still running forward becomes canceling, is made claimable, gets an
// event, and its worker is told through chanEvents.
const sqlCancel = `
WITH RECURSIVE sub AS (
	SELECT id FROM tasks WHERE (id = $1 AND $2::boolean) OR (parent_id = $1 AND NOT $2::boolean)
	UNION ALL
	SELECT c.id FROM tasks c JOIN sub ON c.parent_id = sub.id
), u AS (
	UPDATE tasks t SET
		cancel_requested = true,
		state = 'canceling',
		run_at = least(t.run_at, now()),
		updated_at = now(),
		event_seq = t.event_seq + 1
	FROM sub
	WHERE t.id = sub.id AND t.state IN ('pending', 'running') AND t.phase = 'run' AND NOT t.cancel_requested
	RETURNING t.id, t.kind, t.event_seq, t.phase, t.step, t.step_name, t.attempt
), e AS (
	INSERT INTO task_events (task_id, seq, type, state, phase, step, step_name, attempt)
	SELECT id, event_seq, 'cancel_requested', 'canceling', phase, step, step_name, attempt FROM u
), n AS (
	SELECT pg_notify('` + chanEvents + `', id::text || ' cancel_requested') FROM u
	UNION ALL
	SELECT pg_notify('` + chanWake + `', k.kind) FROM (SELECT DISTINCT kind FROM u) k
)
SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)`

const sqlGet = `SELECT ` + taskColumns + ` FROM tasks WHERE id = $1`

// sqlWatch asks for NOTIFY of task $1's events for the next $2 ms.
const sqlWatch = `
UPDATE tasks SET watched_until = greatest(watched_until, now() + $2 * interval '1 millisecond')
WHERE id = $1 RETURNING state, event_seq`

const sqlSteps = `
SELECT phase, idx, name, state, attempts, output, error, errors, started_at, finished_at
FROM task_steps WHERE task_id = $1
ORDER BY phase = 'undo', CASE WHEN phase = 'run' THEN idx ELSE -idx END`

const sqlOutputs = `
SELECT name, output FROM task_steps WHERE task_id = $1 AND phase = 'run' AND state = 'succeeded'`

const sqlEvents = `
SELECT task_id::text, seq, at, type, state, phase, step, step_name, attempt, error, message
FROM task_events WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`

// sqlChildren lists the children of $1 (of step $2, or all when $2 < 0)
// with the output of their last succeeded run step.
const sqlChildren = `
SELECT ` + taskColumns + `,
	(SELECT s.output FROM task_steps s
	 WHERE s.task_id = tasks.id AND s.phase = 'run' AND s.state = 'succeeded'
	 ORDER BY s.idx DESC LIMIT 1) AS result
FROM tasks WHERE parent_id = $1 AND ($2 < 0 OR parent_step = $2)
ORDER BY parent_step, created_at, spawn_key`

// sqlQueueDepth counts active tasks by what they wait for.
const sqlQueueDepth = `
SELECT
	count(*) FILTER (WHERE NOT waiting AND run_at <= now() AND (lease_expires_at IS NULL OR lease_expires_at < now())) AS ready,
	count(*) FILTER (WHERE NOT waiting AND run_at > now() AND lease_expires_at IS NULL AND waiting_since IS NULL) AS scheduled,
	count(*) FILTER (WHERE NOT waiting AND run_at > now() AND lease_expires_at IS NULL AND waiting_since IS NOT NULL) AS snoozed,
	count(*) FILTER (WHERE lease_expires_at >= now()) AS running,
	count(*) FILTER (WHERE waiting) AS waiting
FROM tasks WHERE state IN ` + activeStates

// sqlWake makes the snoozing tasks among the active task on target $1 and
// its active descendants claimable now, and tells the workers; the tasks a
// worker holds get wake_pending instead, so that a snooze they write next
// is due at once. Tasks parked for their children, in a retry's backoff or
// not waiting are left alone. The task is found by
// tasks_one_active_per_target, its descendants by tasks_parent.
const sqlWake = `
WITH RECURSIVE sub AS (
	SELECT id FROM tasks WHERE target = $1 AND state IN ` + activeStates + `
	UNION ALL
	SELECT c.id FROM tasks c JOIN sub ON c.parent_id = sub.id WHERE c.state IN ` + activeStates + `
), u AS (
	UPDATE tasks t SET
		run_at = CASE WHEN t.lease_token IS NULL THEN least(t.run_at, now()) ELSE t.run_at END,
		wake_pending = t.lease_token IS NOT NULL
	FROM sub
	WHERE t.id = sub.id AND NOT t.waiting AND (t.lease_token IS NOT NULL OR t.waiting_since IS NOT NULL)
	RETURNING t.kind, t.lease_token IS NULL AS woken
), n AS (
	SELECT pg_notify('` + chanWake + `', k.kind) FROM (SELECT DISTINCT kind FROM u WHERE woken) k
)
SELECT count(*) FILTER (WHERE woken), (SELECT count(*) FROM n) FROM u`

// sqlPrune deletes up to $2 ended task trees whose root finished before
// $1; children, steps and events go by ON DELETE CASCADE. A tree with a
// task still active (a child left behind) is kept.
const sqlPrune = `
WITH doomed AS (
	SELECT r.id FROM tasks r
	WHERE r.parent_id IS NULL AND r.finished_at < $1
		AND r.state IN ('succeeded', 'failed', 'canceled')
		AND NOT EXISTS (SELECT 1 FROM tasks d WHERE d.root_id = r.id
			AND d.state NOT IN ('succeeded', 'failed', 'canceled'))
	ORDER BY r.finished_at
	LIMIT $2
	FOR UPDATE SKIP LOCKED
), d AS (
	DELETE FROM tasks t USING doomed WHERE t.id = doomed.id RETURNING t.id
)
SELECT count(*) FROM d`
