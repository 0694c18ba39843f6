#!/usr/bin/env node
// A test-only OpenAI-compatible Chat Completions server that streams scripted answers, for
// Switchboard's integration and end-to-end tests. What it answers depends on the last user message:
//
//   contains "slow"  60 words, 100 ms apart (long enough to reload a page mid-answer)
//   contains "xss"   an answer full of HTML and links that must render inert
//   contains "fail"  HTTP 500
//   "tool:NAME {json}"  a call of the offered tool NAME with those arguments (streamed in pieces, as
//                    real servers do; several "tool:" in one message ask for several calls in one
//                    turn); once the tools' results are the last messages, "The tool said:
//                    <result> | <result>."; when told the person declined (a system message last), an answer
//                    that repeats what it was told
//   contains "recall" "Earlier: <tool> said <result> | …." from the tool messages the conversation
//                    gives it (earlier answers' calls and results)
//   anything else    "You said: <message>." and a short Markdown answer, word by word
//
// Like OpenAI, it refuses (HTTP 400) a conversation where a tool message answers no call of the
// assistant message before it, or a call is left unanswered.
//
//   node server.mjs --port 0 [--delay 20] [--key K]   prints {"url":"http://127.0.0.1:PORT/v1"} when ready
//
// Its API key is `test-key` unless --key says otherwise; `--key none` asks for none, as a local
// Ollama or llama.cpp server does.
import * as http from 'node:http';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: { port: { type: 'string' }, delay: { type: 'string' }, key: { type: 'string' } },
});
const PORT = Number(args.port ?? 0);
const DELAY = Number(args.delay ?? 20);
const KEY = args.key ?? 'test-key';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function script(text) {
  if (text.includes('slow')) {
    return { words: Array.from({ length: 60 }, (_, i) => `word${i + 1} `), delay: 100 };
  }
  if (text.includes('xss')) {
    return {
      words: [
        'Careful: ', '<script>window.__xss = 1</script> ',
        '<img src=x onerror="window.__xss = 2"> ',
        '[click me](javascript:window.__xss=3) ',
        '<a href="javascript:window.__xss=4">raw link</a> ',
        'and **bold** text.',
      ],
      delay: DELAY,
    };
  }
  const answer = `You said: ${text}. Here is **an answer** in Markdown:\n\n- one\n- two\n\n\`\`\`rust\nfn main() {}\n\`\`\`\n`;
  return { words: answer.split(/(?<= )/), delay: DELAY };
}

// Why OpenAI would refuse these messages' tool calls and results, or null.
function checkToolMessages(messages) {
  let open = new Set();
  for (const [i, m] of messages.entries()) {
    if (m.role === 'tool') {
      if (!open.delete(m.tool_call_id)) {
        return `messages[${i}]: a message with role 'tool' must be a response to a preceding message with 'tool_calls' (no call '${m.tool_call_id}')`;
      }
      continue;
    }
    if (open.size > 0) {
      return `messages[${i}]: the tool_call_ids ${[...open].join(', ')} of an assistant message did not have response messages`;
    }
    open = new Set(m.role === 'assistant' ? (m.tool_calls ?? []).map((c) => c.id) : []);
  }
  return open.size > 0 ? `the tool_call_ids ${[...open].join(', ')} did not have response messages` : null;
}

const server = http.createServer(async (req, res) => {
  if (req.method === 'GET' && req.url === '/v1/models') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ object: 'list', data: [{ id: 'scripted', object: 'model' }] }));
  }
  if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
    res.writeHead(404, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ error: { message: 'not found' } }));
  }
  if (KEY !== 'none' && req.headers.authorization !== `Bearer ${KEY}`) {
    res.writeHead(401, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ error: { message: 'Incorrect API key provided' } }));
  }
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  const unpaired = checkToolMessages(body.messages);
  if (unpaired) {
    res.writeHead(400, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ error: { message: unpaired, type: 'invalid_request_error' } }));
  }
  const last = [...body.messages].reverse().find((m) => m.role === 'user')?.content ?? '';
  if (last.includes('fail')) {
    res.writeHead(500, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ error: { message: 'the scripted failure' } }));
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const send = (obj) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
  const base = { id: 'chatcmpl-test', object: 'chat.completion.chunk', model: body.model };
  const final = body.messages.at(-1);
  const offered = (body.tools ?? []).map((t) => t.function?.name);
  const asked = (final?.role === 'user' ? final.content : '')
    .split(/(?=tool:)/)
    .map((part) => /^tool:(\S+)\s*(\{.*\})?/s.exec(part.trim()))
    .filter((call) => call && offered.includes(call[1]));
  let words;
  if (final?.role === 'tool') {
    const results = [];
    for (let i = body.messages.length - 1; i >= 0 && body.messages[i].role === 'tool'; i--) {
      results.unshift(body.messages[i]);
    }
    words = `The tool said: ${results.map((m) => m.content).join(' | ')}.`.split(/(?<= )/);
  } else if (final?.role === 'system') {
    words = `Understood, I did not use it. ${final.content}`.split(/(?<= )/);
  } else if (final?.role === 'user' && final.content.includes('recall')) {
    const names = new Map(
      body.messages
        .flatMap((m) => (m.role === 'assistant' ? (m.tool_calls ?? []) : []))
        .map((c) => [c.id, c.function.name]),
    );
    const told = body.messages
      .filter((m) => m.role === 'tool')
      .map((m) => `${names.get(m.tool_call_id)} said ${m.content}`);
    words = `Earlier: ${told.length > 0 ? told.join(' | ') : 'no tools'}.`.split(/(?<= )/);
  } else if (asked.length > 0) {
    send({ ...base, choices: [{ index: 0, delta: { role: 'assistant' }, finish_reason: null }] });
    asked.forEach(([, name, json], index) => {
      const args = json ?? '{}';
      const cut = Math.floor(args.length / 2);
      const id = `call_${index + 1}`;
      send({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index, id, type: 'function', function: { name, arguments: args.slice(0, cut) } }] }, finish_reason: null }] });
      send({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index, function: { arguments: args.slice(cut) } }] }, finish_reason: null }] });
    });
    send({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] });
    return res.end('data: [DONE]\n\n');
  }
  const { words: scripted, delay } = words ? { words, delay: DELAY } : script(last);
  let closed = false;
  req.on('close', () => { closed = true; });
  send({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
  for (const word of scripted) {
    if (closed) return;
    send({ ...base, choices: [{ index: 0, delta: { content: word }, finish_reason: null }] });
    await sleep(delay);
  }
  send({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
  res.end('data: [DONE]\n\n');
});

server.listen(PORT, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${server.address().port}/v1` })}\n`);
});
const shutdown = () => { server.close(() => process.exit(0)); server.closeAllConnections(); };
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
