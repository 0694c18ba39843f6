// A hostile MCP server over stdio, for the tests that Switchboard stays bounded whatever a tool
// server sends. Built on the official TypeScript SDK's low-level Server, which lets it answer
// tools/list as no well-behaved server would. Its tool list, chosen by the first argument:
//   endless       every page asks for another (nextCursor), each with a few tools of 100 KB
//   many          one page of 5,000 tools
//   huge-descriptions  ten tools with descriptions of 1 MB each
//   normal        the tools below alone
// Its tools, in every mode: `echo`; `flood` answers with one text of `mb` MB (one line on stdout);
// `big` answers with `kb` KB of text; `spam` sends `count` notifications/tools/list_changed;
// `list-calls` says how many tools/list requests reached it.
// With a second argument `http` (answers as event streams) or `http-json` (as JSON bodies) it serves
// Streamable HTTP on 127.0.0.1 instead, statelessly, and prints {"url": ".../mcp"} once it listens.
import { createServer } from 'node:http';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const mode = process.argv[2] ?? 'normal';
const over = process.argv[3] ?? 'stdio';
const text = (t) => ({ content: [{ type: 'text', text: t }] });
const tool = (name, description, properties = {}) => ({
  name,
  description,
  inputSchema: { type: 'object', properties },
});
const own = [
  tool('echo', 'Echoes the message back', { message: { type: 'string' } }),
  tool('flood', 'Answers with one text of this many MB', { mb: { type: 'number' } }),
  tool('big', 'Answers with this many KB of text', { kb: { type: 'number' } }),
  tool('spam', 'Sends this many tools/list_changed notifications', { count: { type: 'number' } }),
  tool('list-calls', 'How many tools/list requests reached this server'),
];

let listCalls = 0;
// The answers of one server instance (stdio has one; stateless HTTP one per request).
const serve = (server) => {
  server.setRequestHandler(ListToolsRequestSchema, async (request) => {
    listCalls += 1;
    const page = Number(request.params?.cursor ?? 0);
    switch (mode) {
      case 'endless': {
        const tools = Array.from({ length: 5 }, (_, i) => tool(`t-${page}-${i}`, 'd'.repeat(100_000)));
        return { tools: page === 0 ? [...own, ...tools] : tools, nextCursor: String(page + 1) };
      }
      case 'many':
        return { tools: [...own, ...Array.from({ length: 5000 }, (_, i) => tool(`t-${i}`, 'A tool'))] };
      case 'huge-descriptions':
        return {
          tools: [...own, ...Array.from({ length: 10 }, (_, i) => tool(`wordy-${i}`, 'w'.repeat(1_000_000)))],
        };
      default:
        return { tools: own };
    }
  });

  server.setRequestHandler(CallToolRequestSchema, async (request) => {
    const args = request.params.arguments ?? {};
    switch (request.params.name) {
      case 'echo':
        return text(`Echo: ${args.message}`);
      case 'flood':
        return text('f'.repeat(Math.round(args.mb * 1024 * 1024)));
      case 'big':
        return text('b'.repeat(Math.round(args.kb * 1000)));
      case 'spam': {
        for (let i = 0; i < args.count; i += 1) {
          await server.notification({ method: 'notifications/tools/list_changed' });
        }
        return text(`sent ${args.count}`);
      }
      case 'list-calls':
        return text(String(listCalls));
      default:
        throw new Error(`no tool ${request.params.name}`);
    }
  });
};

const newServer = () => {
  const server = new Server(
    { name: 'switchboard-hostile-server', version: '1.0.0' },
    { capabilities: { tools: { listChanged: true } } },
  );
  serve(server);
  return server;
};

if (over === 'stdio') {
  await newServer().connect(new StdioServerTransport());
} else {
  const http = createServer(async (req, res) => {
    const server = newServer();
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse: over === 'http-json',
    });
    res.on('close', () => {
      transport.close();
      server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res);
  });
  http.listen(0, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${http.address().port}/mcp` }) + '\n');
  });
}
