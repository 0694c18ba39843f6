import { defineConfig, devices } from "@playwright/test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

// The release server, started fresh for the run on its own port. Its database is DATABASE_URL when
// set (scripts/test sets it to a throwaway cluster), otherwise its own embedded cluster in a temp dir.
const root = resolve(__dirname, "..");
const port = Number(process.env.E2E_PORT ?? 3100);
const bin = resolve(root, process.env.SWITCHBOARD_BIN ?? "target/release/switchboard");
const dataDir = mkdtempSync(join(tmpdir(), "switchboard-e2e-"));

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
  webServer: {
    command: `"${bin}"`,
    cwd: root,
    url: `http://127.0.0.1:${port}/readyz`,
    timeout: 120_000,
    reuseExistingServer: false,
    stdout: "ignore",
    stderr: "pipe",
    env: {
      SWITCHBOARD_LISTEN: `127.0.0.1:${port}`,
      SWITCHBOARD_DATA_DIR: dataDir,
      SWITCHBOARD_SITE_ROOT: resolve(root, "target/site"),
      RUST_LOG: process.env.RUST_LOG ?? "warn",
    },
  },
});
