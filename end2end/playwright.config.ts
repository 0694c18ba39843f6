import { defineConfig, devices } from "@playwright/test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

// Two release servers, started fresh for the run: one in local mode (no sign-in) on E2E_PORT whose
// model is the scripted OpenAI-compatible server (end2end/fake-llm, on E2E_PORT + 3), and one with
// single sign-on through a real OpenID provider (panva's oidc-provider, end2end/oidc) and no model, on
// the next two ports. Their database is DATABASE_URL when set (scripts/test sets it to a throwaway cluster;
// both instances share it, as several instances of one deployment do), otherwise each runs its own
// embedded cluster in a temp dir.
const root = resolve(__dirname, "..");
const port = Number(process.env.E2E_PORT ?? 3100);
const idpPort = port + 1;
const ssoPort = port + 2;
const llmPort = port + 3;
// A tool server that asks people to sign in (the project's own, end2end/mcp/test-server.mjs over
// HTTP), and the authorization server it trusts (the test provider with --resource-servers).
const mcpIdpPort = port + 4;
const guardedPort = port + 5;
// A tool server of the newest protocol (end2end/mcp/later-server.py, on the official Python SDK
// that scripts/setup installs with mcp-server-time), which asks with multi round-trip requests.
const laterPort = port + 6;
const python = resolve(root, ".tools/mcp-time/bin/python");
const bin = resolve(root, process.env.SWITCHBOARD_BIN ?? "target/release/switchboard");
// The Node.js running Playwright (scripts/test puts the pinned one first on PATH).
const node = process.execPath;
const idpClients = JSON.stringify([
  {
    client_id: "switchboard",
    client_secret: "e2e-secret",
    redirect_uris: [`http://127.0.0.1:${ssoPort}/auth/callback/idp`],
    post_logout_redirect_uris: [`http://127.0.0.1:${ssoPort}/auth/signed-out`],
  },
]);

// The local-mode instance's tool servers: the reference server-everything over stdio.
const mcpServersFile = join(mkdtempSync(join(tmpdir(), "switchboard-e2e-mcp-")), "servers.toml");
writeFileSync(
  mcpServersFile,
  [
    "[[server]]",
    'id = "everything"',
    'name = "Everything"',
    'description = "The MCP reference server"',
    'transport = "stdio"',
    `command = ${JSON.stringify(node)}`,
    `args = [${JSON.stringify(resolve(root, "node_modules/@modelcontextprotocol/server-everything/dist/index.js"))}, "stdio"]`,
    "",
    "[[server]]",
    'id = "guarded"',
    'name = "Guarded"',
    'description = "Asks each person to sign in"',
    'transport = "http"',
    `url = "http://127.0.0.1:${guardedPort}/mcp"`,
    "",
    "[[server]]",
    'id = "later"',
    'name = "Later"',
    'description = "Asks with multi round-trip requests (MCP 2026-07-28)"',
    'transport = "http"',
    `url = "http://127.0.0.1:${laterPort}/mcp"`,
    "",
  ].join("\n"),
);

const common = {
  cwd: root,
  timeout: 120_000,
  reuseExistingServer: false,
  stdout: "ignore" as const,
  stderr: "pipe" as const,
};
const switchboardEnv = (listenPort: number) => ({
  SWITCHBOARD_LISTEN: `127.0.0.1:${listenPort}`,
  // Every browser of the run is the same person to the local-mode instance (the local user), two
  // of them at once, each clicking faster than a person can: several people's worth of the
  // default rate (10/s, bursts of 60).
  SWITCHBOARD_RATE_LIMIT_PER_SECOND: "40",
  SWITCHBOARD_RATE_LIMIT_BURST: "240",
  SWITCHBOARD_DATA_DIR: mkdtempSync(join(tmpdir(), "switchboard-e2e-")),
  SWITCHBOARD_SITE_ROOT: resolve(root, "target/site"),
  // An instance without providers must not pick up a model server that happens to run here.
  SWITCHBOARD_LOCAL_MODEL_URLS: "off",
  RUST_LOG: process.env.RUST_LOG ?? "warn",
});

export default defineConfig({
  testDir: "./tests",
  outputDir: "./test-results",
  timeout: 30_000,
  expect: { timeout: 10_000 },
  fullyParallel: true,
  workers: 2,
  forbidOnly: !!process.env.CI,
  retries: 0,
  reporter: [["list"]],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    trace: "retain-on-failure",
    launchOptions: {
      // Debian's Chromium: Playwright cannot download browsers without internet access.
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
      ],
    },
  },
  projects: [
    { name: "desktop", use: { ...devices["Desktop Chrome"], channel: undefined } },
    { name: "phone", use: { ...devices["Pixel 7"], channel: undefined } },
  ],
  webServer: [
    {
      ...common,
      command: `"${node}" end2end/fake-llm/server.mjs --port ${llmPort}`,
      url: `http://127.0.0.1:${llmPort}/v1/models`,
    },
    {
      ...common,
      command: `"${node}" end2end/oidc/provider.mjs --port ${mcpIdpPort} --resource-servers`,
      url: `http://127.0.0.1:${mcpIdpPort}/.well-known/openid-configuration`,
    },
    {
      ...common,
      command: `"${node}" end2end/mcp/test-server.mjs http`,
      url: `http://127.0.0.1:${guardedPort}/.well-known/oauth-protected-resource/mcp`,
      env: { MCP_PORT: String(guardedPort), AUTH_ISSUER: `http://127.0.0.1:${mcpIdpPort}` },
    },
    {
      ...common,
      command: `"${python}" end2end/mcp/later-server.py --port ${laterPort}`,
      port: laterPort,
    },
    {
      ...common,
      command: `"${bin}"`,
      url: `http://127.0.0.1:${port}/readyz`,
      env: {
        ...switchboardEnv(port),
        SWITCHBOARD_LLM_PROVIDERS: "fake",
        SWITCHBOARD_LLM_FAKE_BASE_URL: `http://127.0.0.1:${llmPort}/v1`,
        SWITCHBOARD_LLM_FAKE_API_KEY: "test-key",
        SWITCHBOARD_LLM_FAKE_MODELS: "scripted,other",
        SWITCHBOARD_MCP_SERVERS_FILE: mcpServersFile,
      },
    },
    {
      ...common,
      command: `"${node}" end2end/oidc/provider.mjs --port ${idpPort} --clients '${idpClients}'`,
      url: `http://127.0.0.1:${idpPort}/.well-known/openid-configuration`,
    },
    {
      ...common,
      command: `"${bin}"`,
      url: `http://127.0.0.1:${ssoPort}/readyz`,
      env: {
        ...switchboardEnv(ssoPort),
        SWITCHBOARD_PUBLIC_URL: `http://127.0.0.1:${ssoPort}`,
        SWITCHBOARD_AUTH_PROVIDERS: "idp",
        SWITCHBOARD_AUTH_IDP_NAME: "Test IdP",
        SWITCHBOARD_AUTH_IDP_ISSUER: `http://127.0.0.1:${idpPort}`,
        SWITCHBOARD_AUTH_IDP_CLIENT_ID: "switchboard",
        SWITCHBOARD_AUTH_IDP_CLIENT_SECRET: "e2e-secret",
        SWITCHBOARD_ADMIN_EMAILS: "alice@example.com",
      },
    },
  ],
});
