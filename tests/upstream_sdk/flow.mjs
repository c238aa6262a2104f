// The upstream SDK's (sandbox-agent@0.4.2) own session flow against our server
// (tests/test_acp_upstream_sdk.py): node flow.mjs BASE_URL.
// Phase 1: connect, create a session with the mock agent, prompt, stream updates; with
// PERMISSION_AGENT (node flow.mjs BASE_URL PERMISSION_AGENT), a session with that agent whose
// prompt "ask" makes it request a permission, answered "once"; list sessions.
// Prints one JSON line {phase: 1, ...} and waits for a line on stdin (the test
// SIGKILLs and restarts our server meanwhile). Phase 2: a new SDK instance on the same
// in-memory persistence driver resumes the session and prompts again; prints {phase: 2, ...}.
import { createInterface } from "node:readline";
import { InMemorySessionPersistDriver, SandboxAgent } from "sandbox-agent";

const baseUrl = process.argv[2];
const permissionAgent = process.argv[3];
const persist = new InMemorySessionPersistDriver();
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function allEvents(sdk, sessionId) {
  const items = [];
  let cursor;
  do {
    const page = await sdk.getEvents({ sessionId, cursor, limit: 500 });
    items.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);
  return items;
}

const sdk = await SandboxAgent.connect({ baseUrl, persist });
const session = await sdk.createSession({ agent: "mock" });
const seen = [];
session.onEvent((event) => seen.push(event));
const first = await session.prompt([{ type: "text", text: "hello" }]);
// Listeners run after persistence, which is not awaited by prompt: give them a moment.
await new Promise((resolve) => setTimeout(resolve, 300));
let permission = null;
if (permissionAgent) {
  const asker = await sdk.createSession({ agent: permissionAgent });
  const asked = [];
  const said = [];
  asker.onPermissionRequest((request) => {
    asked.push(request.options.map((o) => o.optionId));
    void asker.respondPermission(request.id, "once");
  });
  asker.onEvent((event) => {
    const update = event.payload.params?.update;
    if (event.payload.method === "session/update" && update?.content?.text) {
      said.push(update.content.text);
    }
  });
  const answer = await asker.prompt([{ type: "text", text: "ask" }]);
  await new Promise((resolve) => setTimeout(resolve, 300));
  permission = { sessionId: asker.id, asked, said, stopReason: answer.stopReason };
}
const listed = await sdk.listSessions();
console.log(
  JSON.stringify({
    phase: 1,
    sessionId: session.id,
    stopReason: first.stopReason,
    listed: listed.items.map((s) => s.id),
    permission,
    updates: seen
      .filter((e) => e.payload.method === "session/update")
      .map((e) => e.payload.params.update),
    events: await allEvents(sdk, session.id),
  }),
);

await lines.next(); // our server was SIGKILLed and restarted

const sdk2 = await SandboxAgent.connect({ baseUrl, persist });
const resumed = await sdk2.resumeSession(session.id);
const second = await resumed.prompt([{ type: "text", text: "again" }]);
await new Promise((resolve) => setTimeout(resolve, 300));
const record = await sdk2.getSession(session.id);
console.log(
  JSON.stringify({
    phase: 2,
    stopReason: second.stopReason,
    agentSessionId: record.agentSessionId,
    events: await allEvents(sdk2, session.id),
  }),
);
await sdk2.dispose();
process.exit(0);
