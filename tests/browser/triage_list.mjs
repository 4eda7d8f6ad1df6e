// Signs in to the cardwatch triage page in Debian's headless Chromium and
// reports what its alert list shows once loaded, and which feed requests
// the page made to get there (tests/e2e/test_triage_page.py, large feeds).
//
//   node tests/browser/triage_list.mjs URL TOKEN
//
// The last stdout line is "RESULT {"rows": [[alert id, outcome cell
// text], ... top to bottom], "unreviewed": [alert ids listed with the
// outcome filter on Unreviewed], "requests": ["/v1/alerts?...", ...],
// "ms": load time}". Exit status 0, or 1 with "FAIL: why" on stderr.

import { launch } from "./chromium.mjs";

const [url, token] = process.argv.slice(2);
if (!url || !token) {
  console.error("usage: node triage_list.mjs URL TOKEN");
  process.exit(2);
}
const browser = await launch();
try {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(Number(process.env.TRIAGE_TIMEOUT_MS || 30000));
  const requests = [];
  const problems = [];
  page.on("request", (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith("/v1/alerts")) requests.push(u.pathname + u.search);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  await page.goto(url, { waitUntil: "load" });
  const t0 = Date.now();
  await page.locator('[data-testid="token-input"]').fill(token);
  await page.locator('[data-testid="token-input"]').press("Enter");
  await page.locator("body[data-ready]").waitFor();
  const ms = Date.now() - t0;
  const list = () => page.locator('[data-testid="alert-row"]').evaluateAll(
    (rs) => rs.map((r) => [r.getAttribute("data-alert-id"),
      r.querySelector('[data-testid="alert-outcome"]').textContent]));
  const rows = await list();
  await page.locator('[data-testid="filter-outcome"]').selectOption({ label: "Unreviewed" });
  const unreviewed = (await list()).map((r) => r[0]);
  if (problems.length) throw new Error(problems.join("; "));
  console.log("RESULT " + JSON.stringify({ rows, unreviewed, requests, ms }));
} catch (e) {
  console.error(`FAIL: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
