// Reconnect to a run's stream from Node.js with LangGraph's JavaScript SDK: stream a run,
// drop the connection mid-run, then join the run's stream again with `joinStream`, once
// without an event id (what comes from then on, as the reference server gives it) and once
// from the last event id the dropped connection saw (the rest of the run, each event once).
//
//   node join_stream.mjs <server url> <api key or ""> <graph> <input JSON> <custom chunks
//                        to read before dropping>
//
// Prints one JSON line: the run id and the events ({event, data, id}) of the dropped
// stream, of the join without an id (up to its first `custom` chunk) and of the join from
// the last id (to the run's end).
import { Client } from "@langchain/langgraph-sdk";

const [url, apiKey, graph, input, drop] = process.argv.slice(2);
const client = new Client({ apiUrl: url, apiKey: apiKey || undefined });
const streamMode = ["custom", "values"];
const seen = ({ event, data, id }) => ({ event, data, id });

const thread = await client.threads.create();
const dropped = [];
const connection = new AbortController();
for await (const chunk of client.runs.stream(thread.thread_id, graph, {
  input: JSON.parse(input),
  streamMode,
  streamResumable: true, // every stream here resumes; the reference server's only with it
  signal: connection.signal,
})) {
  dropped.push(seen(chunk));
  if (dropped.filter((c) => c.event === "custom").length >= Number(drop)) break;
}
connection.abort();
const runId = dropped[0].data.run_id;

const live = [];
for await (const chunk of client.runs.joinStream(thread.thread_id, runId)) {
  live.push(seen(chunk));
  if (chunk.event === "custom") break;
}

const rest = [];
for await (const chunk of client.runs.joinStream(thread.thread_id, runId, {
  lastEventId: dropped[dropped.length - 1].id,
})) {
  rest.push(seen(chunk));
}
console.log(JSON.stringify({ run_id: runId, thread_id: thread.thread_id, dropped, live, rest }));
