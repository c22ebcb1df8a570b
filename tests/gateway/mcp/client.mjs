#!/usr/bin/env node
// client.mjs - drive asya-gateway's /mcp with the official MCP TypeScript SDK, unchanged.
//
//   node client.mjs <gateway-url> [--call NAME JSON]... [--call-error NAME JSON]...
//
// Connects (initialize + notifications/initialized) with Client and
// StreamableHTTPClientTransport against <gateway-url>/mcp, lists the tools, calls each
// --call tool with its JSON arguments, calls each --call-error tool expecting a JSON-RPC
// error (an McpError), pings, then ends the session (DELETE) and closes.  Every result is
// one JSON object on its own stdout line, {"op": ..., ...}, so tests/gateway/test_mcp.py
// can assert on it; the last line, op "http", lists every HTTP request the SDK made and
// its status.  Any error - a failed step, a transport error the SDK reported, a
// --call-error that succeeded - prints {"op": "error", "message"} and exits 1.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
}

function usage(msg) {
    process.stderr.write(`client.mjs: ${msg}\n` +
        "usage: node client.mjs <gateway-url> [--call NAME JSON]... [--call-error NAME JSON]...\n");
    process.exit(2);
}

function parseArgs(argv) {
    if (argv.length < 1) usage("missing <gateway-url>");
    const opts = { url: argv[0].replace(/\/+$/, "") + "/mcp", calls: [] };
    for (let i = 1; i < argv.length; i++) {
        const a = argv[i];
        if (a === "--call" || a === "--call-error") {
            if (i + 2 >= argv.length) usage(`${a} needs NAME and JSON`);
            let args;
            try {
                args = JSON.parse(argv[i + 2]);
            } catch (e) {
                usage(`${a} ${argv[i + 1]}: bad JSON arguments: ${e.message}`);
            }
            opts.calls.push({ name: argv[i + 1], args, expectError: a === "--call-error" });
            i += 2;
        } else {
            usage(`unknown argument ${a}`);
        }
    }
    return opts;
}

const http = []; // every request the SDK made: {method, status, contentType, session}

async function main() {
    const opts = parseArgs(process.argv.slice(2));
    const transportErrors = [];

    // Record what the SDK sends and what it gets back, without changing either.
    const recordingFetch = async (url, init) => {
        const method = (init && init.method) || "GET";
        const headers = new Headers(init && init.headers);
        const session = headers.get("mcp-session-id");
        try {
            const res = await fetch(url, init);
            http.push({ method, status: res.status, contentType: res.headers.get("content-type"),
                        session });
            return res;
        } catch (e) {
            if (e && e.name === "AbortError") throw e;
            http.push({ method, session, error: String(e && e.message || e) });
            throw e;
        }
    };

    const transport = new StreamableHTTPClientTransport(new URL(opts.url), { fetch: recordingFetch });
    const client = new Client({ name: "asya-gateway-test", version: "0.0.0" });
    client.onerror = (e) => transportErrors.push(String(e && e.message || e));

    await client.connect(transport);
    emit({
        op: "initialize",
        protocolVersion: transport.protocolVersion ?? null,
        sessionId: transport.sessionId ?? null,
        serverInfo: client.getServerVersion() ?? null,
        capabilities: client.getServerCapabilities() ?? null,
    });

    const listed = await client.listTools();
    emit({ op: "listTools", tools: listed.tools });

    for (const c of opts.calls) {
        if (c.expectError) {
            try {
                const result = await client.callTool({ name: c.name, arguments: c.args });
                throw new Error(`callTool ${c.name}: expected a JSON-RPC error, got ${JSON.stringify(result)}`);
            } catch (e) {
                if (!(e instanceof McpError)) throw e;
                emit({ op: "callToolError", name: c.name, code: e.code, message: e.message });
            }
        } else {
            const result = await client.callTool({ name: c.name, arguments: c.args });
            emit({ op: "callTool", name: c.name, result });
        }
    }

    const pong = await client.ping();
    emit({ op: "ping", result: pong });

    const sessionId = transport.sessionId ?? null;
    await transport.terminateSession(); // DELETE <url> with Mcp-Session-Id
    await client.close();
    const del = http.filter((h) => h.method === "DELETE").pop();
    emit({ op: "close", sessionId, deleteStatus: del ? del.status ?? null : null });

    // Give a GET stream the SDK may have opened after initialize its answer (or abort).
    await new Promise((r) => setTimeout(r, 50));
    emit({ op: "http", requests: http });
    if (transportErrors.length) {
        throw new Error(`transport errors: ${transportErrors.join("; ")}`);
    }
}

main().then(
    () => process.exit(0),
    (e) => {
        emit({ op: "error", message: String(e && e.stack || e), code: e && e.code, http });
        process.exit(1);
    },
);
