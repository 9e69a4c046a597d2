package tasks_test

func buildWorker() {}
