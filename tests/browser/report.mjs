// Opens a `cardwatch replay --report-html` page from disk in Debian's
// headless Chromium, with the network cut off (the page must open
// offline), and reports what it drew (tests/e2e/test_report_html.py).
//
//   node tests/browser/report.mjs FILE OUTDIR
//
// Writes OUTDIR/report.png (the whole page), OUTDIR/report.txt (the text
// the page shows, for the caller's card-number scan) and OUTDIR/console.log.
// The last stdout line is "RESULT {"charts": [{"id", "labels", "data":
// [[...], ...]}], "tiles": {label: text}, "status", "headings", "requests",
// "console"}". Exit status 0, or 1 with "FAIL: why" on stderr (a page or
// console error, a request that left the file, the page never ready).

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { launch } from "./chromium.mjs";

const [file, outdir] = process.argv.slice(2);
if (!file || !outdir) {
  console.error("usage: node report.mjs FILE OUTDIR");
  process.exit(2);
}
const browser = await launch();
const consoleLines = [];
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(20000);
  const problems = [];
  const requests = [];
  const url = pathToFileURL(file).href;
  await ctx.route("**/*", (route) => {
    const u = route.request().url();
    if (u === url) return route.continue();
    requests.push(u);
    return route.abort();
  });
  page.on("console", (m) => {
    consoleLines.push(`${m.type()}: ${m.text()}`);
    if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  await page.goto(url, { waitUntil: "load" });
  await page.locator("body[data-ready]").waitFor();
  const result = await page.evaluate(() => {
    const charts = [...document.querySelectorAll("canvas")].map((c) => {
      const ch = Chart.getChart(c);
      return { id: c.id, type: ch ? ch.config.type : null,
               labels: ch ? ch.data.labels : [],
               data: ch ? ch.data.datasets.map((d) => d.data) : [],
               drawn: c.width > 0 && c.height > 0 };
    });
    const tiles = {};
    for (const t of document.querySelectorAll(".tile")) {
      tiles[t.querySelector(".l").textContent] = t.querySelector(".n").textContent;
    }
    return { charts, tiles, status: document.getElementById("status").textContent,
             headings: [...document.querySelectorAll("h2")].map((h) => h.textContent) };
  });
  writeFileSync(join(outdir, "report.txt"), await page.evaluate(() => document.body.innerText));
  await page.screenshot({ path: join(outdir, "report.png"), fullPage: true });
  if (problems.length) throw new Error(problems.join("; "));
  if (requests.length) throw new Error(`requests left the file: ${requests.join(", ")}`);
  console.log("RESULT " + JSON.stringify({ ...result, requests, console: consoleLines.length }));
} catch (e) {
  console.error(`FAIL: ${e.message}`);
  process.exitCode = 1;
} finally {
  writeFileSync(join(outdir, "console.log"), consoleLines.join("\n") + "\n");
  await browser.close();
}
