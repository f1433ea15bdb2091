// openai_client.mjs — the official `openai` npm package against a running
// `simularity serve` (started by test_server.py): chat and completions,
// whole and streamed. Prints "ok NAME" / "FAIL NAME: why" per check.
// Usage: node tests/server/openai_client.mjs http://127.0.0.1:PORT/v1
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.argv[2], apiKey: "unused", maxRetries: 0, timeout: 60000 });
let failed = 0;
const check = (name, cond, why) => {
  if (cond) console.log(`ok ${name}`);
  else {
    failed++;
    console.log(`FAIL ${name}: ${why}`);
  }
};

const models = await client.models.list();
check("models_list", models.data.length === 1 && typeof models.data[0].id === "string", JSON.stringify(models.data));
const model = models.data[0].id;

const messages = [
  { role: "system", content: "You are a narrator." },
  { role: "user", content: "Begin the story." },
];
const chat = await client.chat.completions.create({ model, messages, max_tokens: 16, temperature: 0 });
const whole = chat.choices[0].message.content;
check("chat", typeof whole === "string" && chat.usage.completion_tokens === 16, JSON.stringify(chat));

const stream = await client.chat.completions.create({
  model, messages, max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true },
});
let streamed = "";
let usage = null;
for await (const chunk of stream) {
  if (chunk.choices.length) streamed += chunk.choices[0].delta.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
check("chat_stream", streamed === whole && usage && usage.completion_tokens === 16, `${JSON.stringify(streamed)} vs ${JSON.stringify(whole)}`);

const comp = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 12, temperature: 0 });
check("completion", typeof comp.choices[0].text === "string" && comp.choices[0].finish_reason === "length", JSON.stringify(comp));
const cstream = await client.completions.create({
  model, prompt: "Once upon a time", max_tokens: 12, temperature: 0, stream: true,
});
let ctext = "";
for await (const chunk of cstream) ctext += chunk.choices[0]?.text ?? "";
check("completion_stream", ctext === comp.choices[0].text, `${JSON.stringify(ctext)} vs ${JSON.stringify(comp.choices[0].text)}`);

try {
  await client.chat.completions.create({ model, messages: [], max_tokens: 4 });
  check("error_is_thrown", false, "an empty message list was accepted");
} catch (e) {
  check("error_is_thrown", e instanceof OpenAI.BadRequestError && e.status === 400 && /messages/.test(e.message), String(e));
}

process.exit(failed ? 1 : 0);
