// Runs the reference MCP server @modelcontextprotocol/server-everything over Streamable HTTP on
// 127.0.0.1 (it would listen on every interface) at PORT (default: a free port), and prints
// {"url": ".../mcp"} on its first line of output once it listens.
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (port, ...rest) {
  const callback = typeof rest.at(-1) === 'function' ? rest.pop() : undefined;
  return listen.call(this, port, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${this.address().port}/mcp` }) + '\n');
    callback?.();
  });
};
// The server's own messages go to stderr: stdout carries only the line above.
console.log = console.error;
process.env.PORT ||= '0';
process.argv = [process.argv[0], process.argv[1], 'streamableHttp'];
await import('../../node_modules/@modelcontextprotocol/server-everything/dist/index.js');
