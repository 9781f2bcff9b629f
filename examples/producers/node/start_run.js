#!/usr/bin/env node
// Start a celerygraph run from Node.js: the Celery task `celerygraph.start_run` on the
// scheduler queue, written with plain Redis or AMQP clients (README, "Any language").
//
//   node start_run.js GRAPH INPUT_JSON THREAD_ID [RUN_ID]
//
// CELERYGRAPH_BROKER_URL (redis://... or amqp://...) and CELERYGRAPH_SCHEDULER_QUEUE
// (default "scheduler") name the broker and queue, as for every celerygraph process.
// Prints {"thread_id", "run_id"}; the run id is chosen here so that the producer can wait
// on it at once (`celerygraph wait THREAD_ID RUN_ID`), before the scheduler took the message.
"use strict";

const crypto = require("node:crypto");
const os = require("node:os");

const START_TASK = "celerygraph.start_run";

function startRunMessage({ graph, input, threadId, runId }) {
  const id = crypto.randomUUID(); // the Celery task id
  const kwargs = { thread_id: threadId, run_id: runId, graph, input };
  const headers = {
    lang: "js",
    task: START_TASK,
    id,
    root_id: id,
    parent_id: null,
    group: null,
    retries: 0,
    eta: null,
    expires: null,
    timelimit: [null, null],
    argsrepr: "()",
    kwargsrepr: JSON.stringify(kwargs),
    origin: `node@${os.hostname()}`,
    ignore_result: true,
  };
  // Celery protocol 2 body: [args, kwargs, embed]. Only JSON is accepted.
  const body = JSON.stringify([
    [],
    kwargs,
    { callbacks: null, errbacks: null, chain: null, chord: null },
  ]);
  return { id, headers, body };
}

async function sendWithRedis(url, queue, message) {
  const { createClient } = require("redis");
  const client = createClient({ url });
  client.on("error", (err) => { throw err; });
  await client.connect();
  // The envelope kombu's Redis transport reads from the queue's list (it pops with BRPOP,
  // so LPUSH keeps the queue first in, first out).
  const envelope = {
    body: Buffer.from(message.body, "utf-8").toString("base64"),
    "content-encoding": "utf-8",
    "content-type": "application/json",
    headers: message.headers,
    properties: {
      correlation_id: message.id,
      reply_to: "",
      delivery_mode: 2,
      delivery_info: { exchange: "", routing_key: queue },
      priority: 0,
      body_encoding: "base64",
      delivery_tag: crypto.randomUUID(),
    },
  };
  await client.lPush(queue, JSON.stringify(envelope));
  await client.quit();
}

async function sendWithAmqp(url, queue, message) {
  const amqp = require("amqplib");
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    // A message to a queue nobody declared is dropped by RabbitMQ: fail here instead. The
    // scheduler declares its queue when it starts.
    await channel.checkQueue(queue);
    channel.sendToQueue(queue, Buffer.from(message.body, "utf-8"), {
      contentType: "application/json",
      contentEncoding: "utf-8",
      headers: message.headers,
      correlationId: message.id,
      deliveryMode: 2,
      priority: 0,
    });
    await channel.waitForConfirms();
    await channel.close();
  } finally {
    await connection.close();
  }
}

async function main(argv) {
  if (argv.length < 3) {
    console.error("usage: start_run.js GRAPH INPUT_JSON THREAD_ID [RUN_ID]");
    return 2;
  }
  const [graph, inputJson, threadId, runId = crypto.randomUUID()] = argv;
  const url = process.env.CELERYGRAPH_BROKER_URL || "redis://127.0.0.1:6379/0";
  const queue = process.env.CELERYGRAPH_SCHEDULER_QUEUE || "scheduler";
  const message = startRunMessage({ graph, input: JSON.parse(inputJson), threadId, runId });
  if (url.startsWith("redis://") || url.startsWith("rediss://")) {
    await sendWithRedis(url, queue, message);
  } else if (url.startsWith("amqp://") || url.startsWith("amqps://")) {
    await sendWithAmqp(url, queue, message);
  } else {
    console.error(`unsupported broker URL scheme: ${url.split("://")[0]}`);
    return 2;
  }
  console.log(JSON.stringify({ thread_id: threadId, run_id: runId }));
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err.message || err); process.exitCode = 1; },
);
