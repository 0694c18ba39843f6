// A small MCP server over stdio for the tests of what the reference servers cannot be made to do on
// demand: change its tool list while connected (`add-tool` registers a tool, and the SDK sends
// notifications/tools/list_changed), die mid-session (`crash`), take its time (`wait`), and say
// which calls reached it: with TOOL_LOG set, `echo` and `wait` append a JSON line per call to that
// file as they start. Built on the official TypeScript SDK, as the reference servers are.
import { appendFileSync } from 'node:fs';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';

const server = new McpServer({ name: 'switchboard-test-server', version: '1.0.0' });
const text = (t) => ({ content: [{ type: 'text', text: t }] });
const logCall = (tool, args) => {
  if (process.env.TOOL_LOG) appendFileSync(process.env.TOOL_LOG, JSON.stringify({ tool, args }) + '\n');
};

server.registerTool(
  'echo',
  { description: 'Echoes the message back', inputSchema: { message: z.string() }, annotations: { readOnlyHint: true } },
  async ({ message }) => {
    logCall('echo', { message });
    return text(`Echo: ${message}`);
  },
);
server.registerTool(
  'wait',
  { description: 'Waits this many milliseconds, then says so', inputSchema: { ms: z.number().int().min(0) } },
  async ({ ms }) => {
    logCall('wait', { ms });
    await new Promise((resolve) => setTimeout(resolve, ms));
    return text(`waited ${ms} ms`);
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

await server.connect(new StdioServerTransport());
