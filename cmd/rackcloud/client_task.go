package main

import (
	"context"
	"net/http"
)

func init() {
	register(command{name: "task", summary: "list, show, follow and cancel tasks", run: dispatch("task", []verb{
		{"list", "[--state S] [--kind K] [--target T]", "list tasks, newest first", taskList},
		{"get", "ID", "show a task with its steps", getVerb("task", "tasks")},
		{"watch", "ID", "follow a task's steps until it ends", taskWatch},
		{"cancel", "ID [--wait]", "cancel a task", taskCancel},
	})})
}

var taskColumns = []column{{"ID", "id"}, {"KIND", "kind"}, {"TARGET", "target"}, {"STATE", "state"}, {"STEP", "step_name"},
	{"CREATED", "created_at"}, {"ERROR", "error"}}

func taskList(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("task", "list", &cf)
	state := fs.String("state", "", "only tasks in this state")
	kind := fs.String("kind", "", "only tasks of this kind")
	target := fs.String("target", "", "only tasks changing this resource (guest/<id>)")
	limit := fs.Int("limit", 50, "at most this many (0: all)")
	c, _, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	return c.printList(ctx, "/v1/tasks", *limit, taskColumns, "state", *state, "kind", *kind, "target", *target)
}

func taskWatch(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("task", "watch", &cf)
	c, pos, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	if err := needArgs(pos, 1, "rackcloud task watch ID"); err != nil {
		return err
	}
	return c.waitTask(ctx, pos[0])
}

func taskCancel(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("task", "cancel", &cf)
	wait := fs.Bool("wait", false, "follow the task until it ends")
	c, pos, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	if err := needArgs(pos, 1, "rackcloud task cancel ID"); err != nil {
		return err
	}
	r, err := c.call(ctx, http.MethodPost, "/v1/tasks/"+pos[0]+"/cancel", nil)
	if err != nil {
		return err
	}
	return c.accepted(ctx, r, *wait)
}
