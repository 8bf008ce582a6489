"""In-call tools: a registry of GHL handlers served as Retell custom functions and over MCP.

- `registry`: the built-in handlers (`calendar`, `contacts`) and their schemas.
- `service.run_tool(definition, arguments, context)`: the one way to run a tool, whatever the transport.
- `context.ToolContext`: what the tool knows about the conversation.
- `retell_export`: a definition as a Retell custom-function entry.
"""
