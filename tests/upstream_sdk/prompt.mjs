// One prompt through the upstream SDK (sandbox-agent@0.4.2) against our server
// (tests/test_acp_upstream_sdk.py): node prompt.mjs BASE_URL AGENT CWD TEXT.
// Prints one JSON line: {stopReason, texts (the agent's message chunks), events (persisted)}.
import { InMemorySessionPersistDriver, SandboxAgent } from "sandbox-agent";

const [baseUrl, agent, cwd, text] = process.argv.slice(2);
const sdk = await SandboxAgent.connect({ baseUrl, persist: new InMemorySessionPersistDriver() });
const session = await sdk.createSession({ agent, cwd });
const texts = [];
session.onEvent((event) => {
  const update = event.payload.params?.update;
  if (update?.sessionUpdate === "agent_message_chunk" && update.content?.text) {
    texts.push(update.content.text);
  }
});
const answer = await session.prompt([{ type: "text", text }]);
await new Promise((resolve) => setTimeout(resolve, 300));
const events = (await sdk.getEvents({ sessionId: session.id, limit: 1000 })).items;
console.log(JSON.stringify({ stopReason: answer.stopReason, texts, events }));
await sdk.dispose();
process.exit(0);
