"""A remote MCP server of the project's own that speaks the newest protocol (2026-07-28), on the
official Python SDK (the one `scripts/setup --test` installs with mcp-server-time): its `greet`
tool asks the person their name with a multi round-trip request (the call is answered "input
required", and made again with the reply), then greets them by it. Clients of earlier protocols
are asked mid-call instead, as the SDK does.

    python later-server.py --port 3106
"""

import argparse
from typing import Annotated

from pydantic import BaseModel, Field

from mcp.server.mcpserver import Elicit, MCPServer, Resolve


class Name(BaseModel):
    name: str = Field(title="Name", min_length=2)


def ask_name() -> Elicit[Name]:
    return Elicit("What is your name?", Name)


server = MCPServer("later", log_level="WARNING")


@server.tool(description="Greets the person, by the name they give when asked.")
def greet(who: Annotated[Name, Resolve(ask_name)]) -> str:
    return f"Hello, {who.name}!"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    server.run("streamable-http", host="127.0.0.1", port=port, stateless_http=True)
