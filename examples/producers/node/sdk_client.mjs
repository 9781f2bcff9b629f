// Drive `celerygraph serve` with LangGraph's own JavaScript SDK: create a thread, stream a
// run up to its interrupt, read the thread's state, resume with Command(resume=...).
//
//   node sdk_client.mjs <server url> <api key or ""> <graph> <input JSON> [answer]
//
// Prints one JSON line: the thread, the events the first stream named, the interrupt, the
// state's next nodes and the resumed run's final values.
import { Client } from "@langchain/langgraph-sdk";

const [url, apiKey, graph, input, answer = "approved"] = process.argv.slice(2);
const client = new Client({ apiUrl: url, apiKey: apiKey || undefined });

const thread = await client.threads.create({ metadata: { from: "node" } });
const events = [];
let interrupt = null;
for await (const chunk of client.runs.stream(thread.thread_id, graph, {
  input: JSON.parse(input),
  streamMode: ["values", "updates"],
})) {
  events.push(chunk.event);
  if (chunk.event === "updates" && chunk.data.__interrupt__) {
    interrupt = chunk.data.__interrupt__[0];
  }
}
const state = await client.threads.getState(thread.thread_id);
let final = null;
for await (const chunk of client.runs.stream(thread.thread_id, graph, {
  command: { resume: answer },
  streamMode: "values",
})) {
  if (chunk.event === "values") final = chunk.data;
}
console.log(JSON.stringify({ thread_id: thread.thread_id, events, interrupt,
  next: state.next, final }));
