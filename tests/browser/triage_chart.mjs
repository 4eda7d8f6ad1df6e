// The triage page's chart and sort orders in Debian's headless Chromium
// (tests/e2e/test_triage_page.py, test_triage_page_chart_and_sort):
// signs in, then reports what the list and the chart show in each state.
//
//   node tests/browser/triage_chart.mjs URL TOKEN OUTDIR
//
// States, in this order: "event" (the default order), "detected",
// "event-asc" (the Sort by select), "high" (event order, severity filter
// on high), then, after the line "STEP live-alert" (the caller stores one
// more alert) and that alert's row appearing, "live" (no filter). Each
// state: {sort, rows: [alert ids top to bottom], times: [time cells],
// header: time column header, title: chart title, chart: {labels,
// sets: {severity: [counts]}} read with Chart.getChart(canvas), drawn:
// non-blank canvas pixels}. Also: CSP violations (securitypolicyviolation
// events, from before the page's first script), console errors, the
// Chart.js response the page got. Writes OUTDIR/triage-chart.png and
// console.log; the last stdout line is "RESULT <json>". Exit status 0, or
// 1 with "FAIL: why" on stderr.

import { launch } from "./chromium.mjs";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [url, token, outdir] = process.argv.slice(2);
if (!url || !token || !outdir) {
  console.error("usage: node triage_chart.mjs URL TOKEN OUTDIR");
  process.exit(2);
}
mkdirSync(outdir, { recursive: true });
const tid = (id) => `[data-testid="${id}"]`;
const consoleLines = [];
const browser = await launch();
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  // runs before any script of the page (not subject to its CSP)
  await context.addInitScript(() => {
    window.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) =>
      window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
  });
  const page = await context.newPage();
  page.setDefaultTimeout(Number(process.env.TRIAGE_TIMEOUT_MS || 30000));
  const errors = [];
  const assets = [];
  page.on("console", (m) => {
    consoleLines.push(`${m.type()}: ${m.text()}`);
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("response", (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith("/assets/")) {
      assets.push({ path: u.pathname, status: r.status(), type: r.headers()["content-type"] || "" });
    }
  });
  await page.goto(url, { waitUntil: "load" });
  await page.locator(tid("token-input")).fill(token);
  await page.locator(tid("token-input")).press("Enter");
  await page.locator("body[data-ready]").waitFor();

  const snap = (name) => page.evaluate((name) => {
    const canvas = document.querySelector('[data-testid="chart-canvas"]');
    const c = window.Chart && Chart.getChart(canvas);
    let drawn = 0;
    if (c && canvas.width && canvas.height) {
      const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 3; i < px.length; i += 4) if (px[i]) drawn++;
    }
    const rows = [...document.querySelectorAll('[data-testid="alert-row"]')];
    return {
      state: name,
      sort: document.querySelector('[data-testid="sort"]').value,
      rows: rows.map((r) => r.getAttribute("data-alert-id")),
      times: rows.map((r) => r.querySelector('[data-testid="alert-time"]').textContent),
      header: document.querySelector('[data-testid="time-header"]').textContent,
      title: document.querySelector('[data-testid="chart-title"]').textContent,
      hidden: document.querySelector('[data-testid="chart"]').hidden,
      chart: c ? { labels: [...c.data.labels],
        sets: Object.fromEntries(c.data.datasets.map((d) => [d.label, [...d.data]])) } : null,
      drawn,
    };
  }, name);
  const states = [await snap("event")];
  await page.locator(tid("sort")).selectOption("detected");
  states.push(await snap("detected"));
  await page.locator(tid("sort")).selectOption("event-asc");
  states.push(await snap("event-asc"));
  await page.locator(tid("sort")).selectOption("event");
  await page.locator(tid("filter-severity")).selectOption("high");
  states.push(await snap("high"));
  await page.locator(tid("filter-severity")).selectOption("");

  await page.locator(`${tid("live-status")}[data-state="live"]`).waitFor();
  const n = states[0].rows.length;
  process.stdout.write("STEP live-alert\n");
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="alert-row"]').length === n + 1,
    n, { timeout: Number(process.env.TRIAGE_LIVE_TIMEOUT_MS || 30000) });
  states.push(await snap("live"));
  await page.screenshot({ path: join(outdir, "triage-chart.png"), fullPage: true });
  const csp = await page.evaluate(() => window.__csp);
  const result = { states, csp, errors, assets,
    version: await page.evaluate(() => window.Chart && Chart.version) };
  console.log("RESULT " + JSON.stringify(result));
} catch (e) {
  console.error(`FAIL: ${e.message}`);
  process.exitCode = 1;
} finally {
  writeFileSync(join(outdir, "console.log"), consoleLines.join("\n") + "\n");
  await browser.close();
}
