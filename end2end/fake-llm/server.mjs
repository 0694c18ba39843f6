#!/usr/bin/env node
// A test-only model server that streams scripted answers in two providers' own wire formats, for
// Switchboard's integration and end-to-end tests: OpenAI's Chat Completions
// (POST /v1/chat/completions) and Anthropic's Messages API (POST /v1/messages). Both answer from
// the same script, which depends on the last user message:
//
//   contains "slow"  60 words, 100 ms apart (long enough to reload a page mid-answer)
//   contains "xss"   an answer full of HTML and links that must render inert
//   contains "fail"  HTTP 500
//   contains "overloaded"  Anthropic's HTTP 529 overloaded_error (OpenAI's: HTTP 503)
//   contains "think" the answer is preceded by the model's thinking: `reasoning_content` deltas
//                    (OpenAI); Anthropic's model thinks whenever the request enables thinking, in a
//                    signed thinking block
//   "tool:NAME {json}"  a call of the offered tool NAME with those arguments (streamed in pieces, as
//                    real servers do; several "tool:" in one message ask for several calls in one
//                    turn); once the tools' results are the last messages, "The tool said:
//                    <result> | <result>."; when told the person declined (a system message last, or
//                    in Anthropic's format a "Note from Switchboard" last), an answer that repeats
//                    what it was told
//   model "tiny"     refuses (HTTP 400 context_length_exceeded) messages over 2,000 tokens (8,000
//                    characters of their JSON), as a model with a small context window does
//   contains "recall" "Earlier: <tool> said <result> | …." from the tool messages the conversation
//                    gives it (earlier answers' calls and results)
//   anything else    "You said: <message>." and a short Markdown answer, word by word
//
// Like the real APIs it refuses (HTTP 400) what they refuse: a tool result that answers no call of
// the assistant turn before it, a call left unanswered; and in Anthropic's format a `system` role
// in the messages, no max_tokens, tool blocks in a request that defines no tools, an empty text
// block, and (thinking enabled) a tool-calling assistant turn given back without its signed
// thinking. Usage is reported in both formats (OpenAI's when stream_options.include_usage asks).
//
//   node server.mjs --port 0 [--delay 20] [--key K]   prints {"url":"http://127.0.0.1:PORT/v1"} when ready
//
// Its API key is `test-key` unless --key says otherwise (Bearer for OpenAI, x-api-key for
// Anthropic); `--key none` asks for none, as a local Ollama or llama.cpp server does.
import * as http from 'node:http';
import { createHash } from 'node:crypto';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: { port: { type: 'string' }, delay: { type: 'string' }, key: { type: 'string' } },
});
const PORT = Number(args.port ?? 0);
const DELAY = Number(args.delay ?? 20);
const KEY = args.key ?? 'test-key';
const NOTE = 'Note from Switchboard, not written by the person: ';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const words = (text) => text.split(/(?<= )/);
// What a thought is signed with: the real API's signatures are opaque; this one can be checked.
const sign = (thinking) => createHash('sha256').update(`fake:${thinking}`).digest('base64');

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
  return { words: words(answer), delay: DELAY };
}

// Why OpenAI would refuse these messages' tool calls and results, or null. Takes the messages in
// Chat Completions' shape (Anthropic's are brought to it first).
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

// What to answer to `messages` (Chat Completions' shape) offered the tools `offered` (names):
// { calls: [[name, json]] } or { words, delay }, or { fail: status }.
function answer(messages, offered) {
  const last = [...messages].reverse().find((m) => m.role === 'user')?.content ?? '';
  if (last.includes('overloaded')) return { fail: 'overloaded' };
  if (last.includes('fail')) return { fail: 'server' };
  const final = messages.at(-1);
  const asked = (final?.role === 'user' ? final.content : '')
    .split(/(?=tool:)/)
    .map((part) => /^tool:(\S+)\s*(\{.*\})?/s.exec(part.trim()))
    .filter((call) => call && offered.includes(call[1]));
  if (final?.role === 'tool') {
    const results = [];
    for (let i = messages.length - 1; i >= 0 && messages[i].role === 'tool'; i--) {
      results.unshift(messages[i]);
    }
    return { words: words(`The tool said: ${results.map((m) => m.content).join(' | ')}.`), delay: DELAY };
  }
  if (final?.role === 'system') {
    return { words: words(`Understood, I did not use it. ${final.content}`), delay: DELAY };
  }
  if (final?.role === 'user' && final.content.includes('recall')) {
    const names = new Map(
      messages
        .flatMap((m) => (m.role === 'assistant' ? (m.tool_calls ?? []) : []))
        .map((c) => [c.id, c.function.name]),
    );
    const told = messages
      .filter((m) => m.role === 'tool')
      .map((m) => `${names.get(m.tool_call_id)} said ${m.content}`);
    return { words: words(`Earlier: ${told.length > 0 ? told.join(' | ') : 'no tools'}.`), delay: DELAY };
  }
  if (asked.length > 0) return { calls: asked.map(([, name, json]) => [name, json ?? '{}']) };
  return script(last);
}

const tokens = (text) => Math.ceil(text.length / 4);

async function readJson(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function refuse(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

// Chat Completions.
async function completions(req, res) {
  if (KEY !== 'none' && req.headers.authorization !== `Bearer ${KEY}`) {
    return refuse(res, 401, { error: { message: 'Incorrect API key provided' } });
  }
  const body = await readJson(req);
  const unpaired = checkToolMessages(body.messages);
  if (unpaired) return refuse(res, 400, { error: { message: unpaired, type: 'invalid_request_error' } });
  // The model `tiny` takes 2,000 tokens (about 8,000 characters of messages) at once.
  if (body.model === 'tiny' && JSON.stringify(body.messages).length / 4 > 2000) {
    return refuse(res, 400, { error: { message: "This model's maximum context length is 2000 tokens, and your messages are longer.", code: 'context_length_exceeded' } });
  }
  const plan = answer(body.messages, (body.tools ?? []).map((t) => t.function?.name));
  if (plan.fail === 'server') return refuse(res, 500, { error: { message: 'the scripted failure' } });
  if (plan.fail === 'overloaded') return refuse(res, 503, { error: { message: 'the scripted overload' } });
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const send = (obj) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
  const base = { id: 'chatcmpl-test', object: 'chat.completion.chunk', model: body.model };
  const delta = (d, finish = null) => send({ ...base, choices: [{ index: 0, delta: d, finish_reason: finish }] });
  const input = tokens(JSON.stringify(body.messages));
  let output = 0;
  const done = (reason) => {
    delta({}, reason);
    if (body.stream_options?.include_usage) {
      send({ ...base, choices: [], usage: { prompt_tokens: input, completion_tokens: output, total_tokens: input + output } });
    }
    res.end('data: [DONE]\n\n');
  };
  if (plan.calls) {
    delta({ role: 'assistant' });
    plan.calls.forEach(([name, args], index) => {
      const cut = Math.floor(args.length / 2);
      const id = `call_${index + 1}`;
      delta({ tool_calls: [{ index, id, type: 'function', function: { name, arguments: args.slice(0, cut) } }] });
      delta({ tool_calls: [{ index, function: { arguments: args.slice(cut) } }] });
      output += tokens(name + args);
    });
    return done('tool_calls');
  }
  let closed = false;
  req.on('close', () => { closed = true; });
  delta({ role: 'assistant', content: '' });
  const last = [...body.messages].reverse().find((m) => m.role === 'user')?.content ?? '';
  if (last.includes('think')) {
    for (const piece of words(`The person wants me to think. I will answer plainly.`)) {
      delta({ reasoning_content: piece });
      output += tokens(piece);
      await sleep(plan.delay);
    }
  }
  for (const word of plan.words) {
    if (closed) return;
    delta({ content: word });
    output += tokens(word);
    await sleep(plan.delay);
  }
  done('stop');
}

// Anthropic's messages brought to Chat Completions' shape for the script, or why the real API
// would refuse them.
function fromAnthropic(body) {
  if (typeof body.max_tokens !== 'number') return { error: 'max_tokens: Field required' };
  const messages = [];
  const system = typeof body.system === 'string' ? body.system : (body.system ?? []).map((b) => b.text).join('\n');
  if (system) messages.push({ role: 'system', content: system });
  const thinking = body.thinking?.type === 'enabled';
  const hasTools = (body.tools ?? []).length > 0;
  for (const [i, m] of body.messages.entries()) {
    if (m.role !== 'user' && m.role !== 'assistant') {
      return { error: `messages.${i}.role: Input should be 'user' or 'assistant'` };
    }
    const blocks = typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : m.content;
    for (const b of blocks) {
      if (b.type === 'text' && !b.text) return { error: `messages.${i}: text content blocks must be non-empty` };
      if ((b.type === 'tool_use' || b.type === 'tool_result') && !hasTools) {
        return { error: 'Requests which include `tool_use` or `tool_result` blocks must define tools.' };
      }
    }
    if (m.role === 'assistant') {
      const calls = blocks.filter((b) => b.type === 'tool_use');
      const thought = blocks.find((b) => b.type === 'thinking');
      if (thought && thought.signature !== sign(thought.thinking)) {
        return { error: `messages.${i}.content.0: Invalid \`signature\` in \`thinking\` block` };
      }
      const lastAssistant = !body.messages.slice(i + 1).some((n) => n.role === 'assistant');
      if (thinking && lastAssistant && calls.length > 0 && blocks[0]?.type !== 'thinking') {
        return { error: `messages.${i}.content.0.type: Expected \`thinking\` or \`redacted_thinking\`, but found \`${blocks[0]?.type}\`. When \`thinking\` is enabled, a final \`assistant\` message must start with a thinking block.` };
      }
      messages.push({
        role: 'assistant',
        content: blocks.filter((b) => b.type === 'text').map((b) => b.text).join('') || null,
        tool_calls: calls.map((b) => ({ id: b.id, type: 'function', function: { name: b.name, arguments: JSON.stringify(b.input) } })),
      });
      continue;
    }
    for (const b of blocks) {
      if (b.type === 'tool_result') {
        const content = typeof b.content === 'string' ? b.content : (b.content ?? []).map((c) => c.text).join('');
        messages.push({ role: 'tool', tool_call_id: b.tool_use_id, content });
      } else if (b.type === 'text' && b.text.startsWith(NOTE)) {
        messages.push({ role: 'system', content: b.text.slice(NOTE.length) });
      } else if (b.type === 'text') {
        messages.push({ role: 'user', content: b.text });
      }
    }
  }
  const unpaired = checkToolMessages(messages);
  return unpaired ? { error: unpaired } : { messages };
}

// The Messages API.
async function messages(req, res) {
  const error = (status, type, message) => refuse(res, status, { type: 'error', error: { type, message } });
  if (KEY !== 'none' && req.headers['x-api-key'] !== KEY) {
    return error(401, 'authentication_error', 'invalid x-api-key');
  }
  if (!req.headers['anthropic-version']) {
    return error(400, 'invalid_request_error', 'anthropic-version: header is required');
  }
  const body = await readJson(req);
  const read = fromAnthropic(body);
  if (read.error) return error(400, 'invalid_request_error', read.error);
  const plan = answer(read.messages, (body.tools ?? []).map((t) => t.name));
  if (plan.fail === 'server') return error(500, 'api_error', 'the scripted failure');
  if (plan.fail === 'overloaded') return error(529, 'overloaded_error', 'Overloaded');
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const send = (type, obj) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...obj })}\n\n`);
  let closed = false;
  req.on('close', () => { closed = true; });
  const input = tokens(JSON.stringify(body.messages) + (body.system ?? ''));
  let output = 0;
  send('message_start', { message: { id: 'msg_test', type: 'message', role: 'assistant', model: body.model, content: [], stop_reason: null, usage: { input_tokens: input, output_tokens: 1 } } });
  send('ping', {});
  let index = 0;
  if (body.thinking?.type === 'enabled') {
    const thought = `The person asked something. ${plan.calls ? 'A tool will tell.' : 'I can answer.'}`;
    send('content_block_start', { index, content_block: { type: 'thinking', thinking: '' } });
    for (const piece of words(thought)) {
      send('content_block_delta', { index, delta: { type: 'thinking_delta', thinking: piece } });
      output += tokens(piece);
    }
    send('content_block_delta', { index, delta: { type: 'signature_delta', signature: sign(thought) } });
    send('content_block_stop', { index });
    index += 1;
  }
  let stop = 'end_turn';
  if (plan.calls) {
    for (const [n, [name, args]] of plan.calls.entries()) {
      const cut = Math.floor(args.length / 2);
      send('content_block_start', { index, content_block: { type: 'tool_use', id: `toolu_${n + 1}`, name, input: {} } });
      send('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: '' } });
      send('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: args.slice(0, cut) } });
      send('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: args.slice(cut) } });
      send('content_block_stop', { index });
      output += tokens(name + args);
      index += 1;
    }
    stop = 'tool_use';
  } else {
    send('content_block_start', { index, content_block: { type: 'text', text: '' } });
    for (const word of plan.words) {
      if (closed) return;
      send('content_block_delta', { index, delta: { type: 'text_delta', text: word } });
      output += tokens(word);
      await sleep(plan.delay);
    }
    send('content_block_stop', { index });
  }
  send('message_delta', { delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: output } });
  send('message_stop', {});
  res.end();
}

const server = http.createServer(async (req, res) => {
  const path = req.url.split('?')[0];
  if (req.method === 'GET' && path === '/v1/models') {
    // Anthropic's model list asks for its key; OpenAI's (and Ollama's) is open here.
    if (req.headers['anthropic-version'] && KEY !== 'none' && req.headers['x-api-key'] !== KEY) {
      return refuse(res, 401, { type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } });
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ object: 'list', data: [{ id: 'scripted', object: 'model' }] }));
  }
  if (req.method === 'POST' && path === '/v1/chat/completions') return completions(req, res);
  if (req.method === 'POST' && path === '/v1/messages') return messages(req, res);
  refuse(res, 404, { error: { message: 'not found' } });
});

server.listen(PORT, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${server.address().port}/v1` })}\n`);
});
const shutdown = () => { server.close(() => process.exit(0)); server.closeAllConnections(); };
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
