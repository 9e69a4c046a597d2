// A client generated from the served OpenAPI document (openapi-typescript
// types + openapi-fetch) drives rackcloud: typed requests must compile
// under --strict and work against the real server. api/genclient_test.go
// generates schema.d.ts, compiles this file with tsc and runs it with
// node; it prints one JSON object with what it saw.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type Task = components["schemas"]["Task"];

const base = process.env.RC_URL ?? "";
const token = process.env.RC_TOKEN ?? "";
const client = createClient<paths>({ baseUrl: base, headers: { Authorization: `Bearer ${token}` } });

function must<T>(what: string, r: { data?: T; error?: unknown; response: Response }): T {
  if (r.data === undefined) {
    throw new Error(`${what}: ${r.response.status} ${JSON.stringify(r.error)}`);
  }
  return r.data;
}

async function main(): Promise<void> {
  const out: Record<string, unknown> = {};

  const region = must("createRegion", await client.POST("/v1/regions", { body: { name: "gen", labels: { made: "ts" } } }));
  const zone = must("createZone", await client.POST("/v1/zones", { body: { region_id: region.id, name: "gen-z" } }));
  const image = must("createImage", await client.POST("/v1/images", {
    body: { name: "gen-img", url: "http://127.0.0.1/i.qcow2", checksum: "sha256:" + "cd".repeat(32), format: "qcow2" },
  }));
  const project = must("createProject", await client.POST("/v1/projects", { body: { name: "gen-p" } }));
  const quota = must("setProjectQuota", await client.PUT("/v1/projects/{id}/quota", {
    params: { path: { id: project.id } },
    body: { reserved: { vcpu: 4, memory_mib: 4096, disk_gib: 40, hosts: 0 } },
  }));
  out.quota_vcpu = quota.reserved.vcpu;

  // A change that touches machines: 202, Location, the task in the body.
  const created = await client.POST("/v1/guests", {
    body: { project_id: project.id, name: "gen-g", kind: "vm", flavor: { vcpu: 2, memory_mib: 1024, disk_gib: 10 }, image_id: image.id, zone_id: zone.id },
  });
  const task: Task = must("createGuest", created);
  out.create_status = created.response.status;
  out.location = created.response.headers.get("Location");
  out.task_kind = task.kind;

  let state: Task["state"] = task.state;
  for (let i = 0; i < 600 && state !== "succeeded" && state !== "failed" && state !== "canceled"; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const t = must("getTask", await client.GET("/v1/tasks/{id}", { params: { path: { id: task.id } } }));
    state = t.state;
    out.steps = (t.steps ?? []).map((s) => s.name);
  }
  out.task_state = state;

  // Keyset pages through typed query parameters.
  for (const name of ["gen-a", "gen-b"]) {
    must("createRegion", await client.POST("/v1/regions", { body: { name } }));
  }
  const names: string[] = [];
  let cursor: string | undefined;
  do {
    const page = must("listRegions", await client.GET("/v1/regions", { params: { query: { limit: 1, cursor } } }));
    names.push(...page.items.map((r) => r.name));
    cursor = page.next_cursor;
  } while (cursor);
  out.regions = names;

  // Errors are typed problem documents.
  const missing = await client.GET("/v1/regions/{id}", { params: { path: { id: "00000000-0000-4000-8000-000000000000" } } });
  out.missing_status = missing.response.status;
  out.missing_type = missing.error?.type;
  const bad = await client.POST("/v1/regions", { body: { name: "Not A Name" } });
  out.bad_status = bad.response.status;
  out.bad_type = bad.error?.type;

  console.log(JSON.stringify(out));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
