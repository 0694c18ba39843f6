// A small MCP server for the tests of what the reference servers cannot be made to do on demand:
// change its tool list while connected (`add-tool` registers a tool, and the SDK sends
// notifications/tools/list_changed), die mid-session (`crash`), take its time (`wait`, which says
// when it was cancelled), report progress (`steps`), offer a resource (`test://notes`, more with
// `add-resource`) and a prompt (`greet`), ask the person (`ask`, a form; `ask-often`, again and again), return every kind of content (`picture`,
// `weather` with structuredContent, `references` with a resource link and an embedded resource,
// `oops` with isError), and offer many tools (`EXTRA_TOOLS=200` adds that many, on varied
// subjects, for the tool search). With TOOL_LOG set, it appends a JSON line to that file for each
// call as it starts (`{tool, args}`), each cancellation (`{cancelled: tool}`), and, over HTTP,
// each request (`{http: METHOD, session}`). Built on the official TypeScript SDK, as the reference
// servers are.
//
//   node test-server.mjs           serves stdio
//   node test-server.mjs http      serves Streamable HTTP (with sessions) on 127.0.0.1 at a free
//                                  port (MCP_PORT, if set), and prints {"url": ".../mcp"} once it
//                                  listens
//
// Over HTTP with AUTH_ISSUER set (an OAuth authorization server's issuer, the test provider's
// with --resource-servers), it is a protected resource (MCP authorization): requests need a JWT
// access token from that issuer, for this server (aud) with scope `mcp`, else 401 with a
// `WWW-Authenticate` that points to its protected resource metadata (served at
// /.well-known/oauth-protected-resource/mcp). `whoami` says whose token it was. With
// DISCOVER_FAILS set, it answers the newest protocol's `server/discover` with a 500, as a server of
// an earlier protocol may (logged `{discover: 'failed'}`). Each request logs
// `{auth: 'ok'|'refused', sub, jti}`. `POST /admin/refuse` (`{"refuse": true|false}`) makes it
// refuse every token (as a server does whose sign-in was revoked) or take them again.
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createPublicKey, randomUUID, verify } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

const text = (t) => ({ content: [{ type: 'text', text: t }] });
const log = (entry) => {
  if (process.env.TOOL_LOG) appendFileSync(process.env.TOOL_LOG, JSON.stringify(entry) + '\n');
};
const logCall = (tool, args) => log({ tool, args });
const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });

// A 2×2 PNG, red and blue.
const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEUlEQVR4nGP4zwAEIOI/kAAAG/ID/VxhF44AAAAASUVORK5CYII=';

// Subjects for the extra tools: each gets a verb and a noun, so that a search can tell them apart.
const SUBJECTS = [
  ['invoice', 'billing invoices for customers'],
  ['calendar', 'calendar events and meetings'],
  ['ticket', 'support tickets in the help desk'],
  ['repository', 'source code repositories'],
  ['spreadsheet', 'rows and cells of spreadsheets'],
  ['weather', 'weather forecasts for cities'],
  ['shipment', 'parcels and shipment tracking'],
  ['employee', 'employee records in human resources'],
  ['database', 'database tables and queries'],
  ['playlist', 'music playlists and songs'],
];
const VERBS = ['list', 'get', 'create', 'update', 'delete', 'search', 'archive', 'export', 'share', 'count',
  'merge', 'tag', 'lock', 'copy', 'move', 'restore', 'sync', 'watch', 'print', 'rate'];

function build() {
  const server = new McpServer({ name: 'switchboard-test-server', version: '1.0.0' });
  server.registerTool(
    'echo',
    { description: 'Echoes the message back', inputSchema: { message: z.string() }, annotations: { readOnlyHint: true } },
    async ({ message }) => {
      logCall('echo', { message });
      return text(`Echo: ${message}`);
    },
  );
  server.registerTool(
    'whoami',
    { description: 'Says whose access token the request carried', annotations: { readOnlyHint: true } },
    // No arguments: the handler gets the request's extra alone.
    async (extra) => {
      logCall('whoami', {});
      return text(`You are ${extra.authInfo?.extra?.sub ?? 'nobody'}`);
    },
  );
  server.registerTool(
    'wait',
    { description: 'Waits this many milliseconds, then says so', inputSchema: { ms: z.number().int().min(0) } },
    async ({ ms }, extra) => {
      logCall('wait', { ms });
      extra.signal.addEventListener('abort', () => log({ cancelled: 'wait' }));
      await sleep(ms, extra.signal);
      return text(`waited ${ms} ms`);
    },
  );
  server.registerTool(
    'steps',
    {
      description: 'Works through this many steps, 300 ms each, reporting progress after each',
      inputSchema: { count: z.number().int().min(1).max(20) },
      annotations: { readOnlyHint: true },
    },
    async ({ count }, extra) => {
      logCall('steps', { count });
      const token = extra._meta?.progressToken;
      for (let step = 1; step <= count; step++) {
        await sleep(300, extra.signal);
        if (extra.signal.aborted) {
          log({ cancelled: 'steps' });
          return text('cancelled');
        }
        if (token !== undefined) {
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken: token, progress: step, total: count, message: `step ${step} of ${count}` },
          });
        }
      }
      return text(`did ${count} steps`);
    },
  );
  server.registerTool(
    'picture',
    { description: 'Returns a small picture', annotations: { readOnlyHint: true } },
    async () => ({
      content: [
        { type: 'text', text: 'Here is the picture.' },
        { type: 'image', data: PNG, mimeType: 'image/png' },
      ],
    }),
  );
  server.registerTool(
    'weather',
    {
      description: 'The weather in a city, as structured data',
      inputSchema: { city: z.string() },
      outputSchema: { city: z.string(), celsius: z.number(), sky: z.string() },
      annotations: { readOnlyHint: true },
    },
    async ({ city }) => {
      const data = { city, celsius: 21.5, sky: 'clear' };
      return { content: [{ type: 'text', text: `${city}: 21.5 °C, clear` }], structuredContent: data };
    },
  );
  server.registerTool(
    'references',
    { description: 'Returns a link to a resource and an embedded resource', annotations: { readOnlyHint: true } },
    async () => ({
      content: [
        { type: 'resource_link', uri: 'https://example.com/handbook.pdf', name: 'handbook.pdf', description: 'The handbook', mimeType: 'application/pdf' },
        { type: 'resource', resource: { uri: 'file:///notes/today.md', mimeType: 'text/markdown', text: 'Buy milk.' } },
      ],
    }),
  );
  server.registerTool(
    'oops',
    { description: 'Always fails, saying why', annotations: { readOnlyHint: true } },
    async () => ({ content: [{ type: 'text', text: 'The disk is full.' }], isError: true }),
  );
  server.registerResource(
    'notes',
    'test://notes',
    { title: 'Notes', description: 'Some notes', mimeType: 'text/plain' },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'The meeting is at noon.' }] }),
  );
  server.registerPrompt(
    'greet',
    { title: 'Greet', description: 'A greeting for someone', argsSchema: { who: z.string().describe('Whom to greet') } },
    ({ who }) => ({ messages: [{ role: 'user', content: { type: 'text', text: `Please greet ${who} warmly.` } }] }),
  );
  server.registerTool(
    'add-resource',
    { description: 'Adds a resource with this name (the resource list changes)', inputSchema: { name: z.string() } },
    async ({ name }) => {
      server.registerResource(name, `test://${name}`, { mimeType: 'text/plain' }, async (uri) => ({
        contents: [{ uri: uri.href, text: `${name} contents` }],
      }));
      return text(`added ${name}`);
    },
  );
  server.registerTool(
    'ask',
    {
      description: 'Asks the person who they are (after `after` ms), then says what it was told',
      inputSchema: { after: z.number().int().min(0).optional() },
      annotations: { readOnlyHint: true },
    },
    async ({ after }, extra) => {
      if (after) await sleep(after);
      const answer = await server.server.elicitInput(
        {
          message: 'Who are you?',
          requestedSchema: {
            type: 'object',
            properties: {
              name: { type: 'string', title: 'Name', minLength: 2 },
              lucky: { type: 'integer', title: 'Lucky number', minimum: 1, maximum: 100 },
            },
            required: ['name'],
          },
        },
        { relatedRequestId: extra.requestId },
      );
      return text(`${answer.action}: ${JSON.stringify(answer.content ?? null)}`);
    },
  );
  server.registerTool(
    'ask-often',
    { description: 'Asks the person a yes/no question this many times in a row, then says what it was told', inputSchema: { times: z.number().int().min(1).max(10) }, annotations: { readOnlyHint: true } },
    async ({ times }, extra) => {
      const actions = [];
      for (let i = 1; i <= times; i++) {
        const answer = await server.server.elicitInput(
          { message: `Question ${i}?`, requestedSchema: { type: 'object', properties: { yes: { type: 'boolean' } } } },
          { relatedRequestId: extra.requestId },
        );
        actions.push(answer.action);
      }
      return text(actions.join(','));
    },
  );
  server.registerTool(
    'add-tool',
    { description: 'Adds a tool with this name (the tool list changes)', inputSchema: { name: z.string() } },
    async ({ name }) => {
      server.registerTool(name, { description: `Added while connected` }, async () => text(`${name} ran`));
      return text(`added ${name}`);
    },
  );
  server.registerTool(
    'crash',
    { description: 'Exits the server process at once, as a crash would' },
    async () => {
      process.exit(3);
    },
  );
  server.registerTool(
    'pid',
    { description: 'The process id of this server', annotations: { readOnlyHint: true } },
    async () => text(String(process.pid)),
  );
  const extra = Number(process.env.EXTRA_TOOLS ?? 0);
  for (let i = 0; i < extra; i++) {
    const [noun, about] = SUBJECTS[i % SUBJECTS.length];
    const verb = VERBS[Math.floor(i / SUBJECTS.length) % VERBS.length];
    const name = `${verb}_${noun}_${i}`;
    server.registerTool(
      name,
      { description: `${verb[0].toUpperCase()}${verb.slice(1)} ${about}`, inputSchema: { id: z.string().optional() }, annotations: { readOnlyHint: true } },
      async (args) => {
        logCall(name, args);
        return text(`${name} done`);
      },
    );
  }
  return server;
}

// ---- MCP authorization (AUTH_ISSUER): the tokens this server takes.
const ISSUER = process.env.AUTH_ISSUER;
let refusing = false;
let keys;
async function publicKey(kid) {
  keys ??= (await (await fetch(`${ISSUER}/jwks`)).json()).keys;
  const jwk = keys.find((k) => k.kid === kid) ?? keys[0];
  return createPublicKey({ key: jwk, format: 'jwk' });
}
// The token's claims when it is a valid access token for `resource`, else why not.
async function checkToken(header, resource) {
  const token = /^Bearer (.+)$/.exec(header ?? '')?.[1];
  if (!token) return { why: 'no token' };
  const [h, p, sig] = token.split('.');
  if (!sig) return { why: 'not a JWT' };
  const head = JSON.parse(Buffer.from(h, 'base64url'));
  const claims = JSON.parse(Buffer.from(p, 'base64url'));
  const key = await publicKey(head.kid);
  if (!verify('RSA-SHA256', Buffer.from(`${h}.${p}`), key, Buffer.from(sig, 'base64url'))) return { why: 'bad signature' };
  if (claims.iss !== ISSUER) return { why: 'wrong issuer' };
  const aud = [claims.aud].flat();
  if (!aud.includes(resource)) return { why: `wrong audience ${aud}` };
  if (!(claims.exp * 1000 > Date.now())) return { why: 'expired' };
  if (!String(claims.scope ?? '').split(' ').includes('mcp')) return { why: 'no mcp scope' };
  if (refusing) return { why: 'refused' };
  return { claims, token };
}

if (process.argv[2] === 'http') {
  const sessions = new Map();
  const http = createServer(async (req, res) => {
    const session = req.headers['mcp-session-id'] ?? null;
    log({ http: req.method, session });
    if (ISSUER) {
      const base = `http://127.0.0.1:${http.address().port}`;
      const resource = `${base}/mcp`;
      const path = new URL(req.url, base).pathname;
      if (path.startsWith('/.well-known/oauth-protected-resource')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ resource, authorization_servers: [ISSUER], scopes_supported: ['mcp'], bearer_methods_supported: ['header'] }));
        return;
      }
      if (path === '/admin/refuse' && req.method === 'POST') {
        let body = '';
        for await (const chunk of req) body += chunk;
        refusing = JSON.parse(body).refuse;
        res.writeHead(204).end();
        return;
      }
      const checked = await checkToken(req.headers.authorization, resource);
      if (!checked.claims) {
        log({ auth: 'refused', why: checked.why });
        res.writeHead(401, {
          'content-type': 'application/json',
          'www-authenticate': `Bearer error="invalid_token", resource_metadata="${base}/.well-known/oauth-protected-resource/mcp", scope="mcp"`,
        });
        res.end(JSON.stringify({ error: 'invalid_token', error_description: checked.why }));
        return;
      }
      log({ auth: 'ok', sub: checked.claims.sub, jti: checked.claims.jti });
      req.auth = { token: checked.token, clientId: checked.claims.client_id, scopes: ['mcp'], extra: { sub: checked.claims.sub } };
    }
    let transport = session && sessions.get(session);
    let parsed;
    if (!transport && process.env.DISCOVER_FAILS && req.method === 'POST') {
      // As a server of an earlier protocol may: fail the newest one's discovery outright.
      let body = '';
      for await (const chunk of req) body += chunk;
      parsed = JSON.parse(body);
      if (parsed.method === 'server/discover') {
        log({ discover: 'failed' });
        res.writeHead(500, { 'content-type': 'text/plain' }).end('Internal Server Error');
        return;
      }
    }
    if (!transport) {
      if (session || req.method !== 'POST') {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null }));
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => sessions.set(id, transport),
      });
      transport.onclose = () => sessions.delete(transport.sessionId);
      await build().connect(transport);
    }
    await transport.handleRequest(req, res, parsed);
  });
  http.listen(Number(process.env.MCP_PORT ?? 0), '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${http.address().port}/mcp` }) + '\n');
  });
} else {
  await build().connect(new StdioServerTransport());
}
