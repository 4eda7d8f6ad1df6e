// Drives the cardwatch triage page (web/triage.html, served by `cardwatch
// feed` at /) in Debian's headless Chromium through playwright-core.
//
//   node tests/browser/triage.mjs URL TOKEN OUTDIR SPEC.json
//
// SPEC.json says what the feed holds (see tests/e2e/test_triage_page.py):
//   {"count": 12,                         alerts in the feed at the start
//    "pans": ["400001******1234", ...],   masked PANs that must be listed
//    "severity": {"high": 7, ...},        alerts per severity
//    "rule": ["cnp-use", 5],              a rule and its alert count
//    "live_alert_id": "ab12...",          the alert sent while the page is open
//    "live_pan": "400001******9876"}
// Protocol with the caller: when the page is ready for a live alert the
// script prints the line "STEP live-alert" and waits for that alert to
// appear (the caller sends the transaction). Writes OUTDIR/triage.png,
// dom.html, dom.txt (for the caller's card-number scan), console.log and
// result.json; the last stdout line is "RESULT <json>" (with the chart's
// labels and per-severity counts, from Chart.getChart, before and after
// the live alert: "chart", "chart_live"). The list must be in event-time
// order, newest first (ties in feed order). Exit status 0 when
// every check passed, 1 with "FAIL: why" on stderr otherwise.

import { launch } from "./chromium.mjs";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const [url, token, outdir, specPath] = process.argv.slice(2);
if (!url || !token || !outdir || !specPath) {
  console.error("usage: node triage.mjs URL TOKEN OUTDIR SPEC.json");
  process.exit(2);
}
const spec = JSON.parse(readFileSync(specPath, "utf8"));
const T = Number(process.env.TRIAGE_TIMEOUT_MS || 20000);
mkdirSync(outdir, { recursive: true });

const t0 = Date.now();
const timings = {};
const consoleLines = [];
const problems = [];
let mark = Date.now();
function lap(name) {
  const now = Date.now();
  timings[name] = now - mark;
  mark = now;
}
function check(cond, msg) {
  if (!cond) throw new Error(msg);
}
const tid = (id) => `[data-testid="${id}"]`;
// The chart as Chart.js holds it: {labels, sets: {severity: counts}, drawn}
const chartData = () => page.evaluate(() => {
  const canvas = document.querySelector('[data-testid="chart-canvas"]');
  const c = window.Chart && Chart.getChart(canvas);
  return c && { labels: [...c.data.labels], drawn: canvas.width > 0 && canvas.height > 0,
    sets: Object.fromEntries(c.data.datasets.map((d) => [d.label, [...d.data]])) };
});

async function api(path, opts = {}) {
  const r = await fetch(new URL(path, url), {
    method: opts.method || "GET",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: opts.body ? JSON.stringify(opts.body) : undefined,
  });
  const text = await r.text();
  let body = null;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: r.status, body };
}

// Independent of the page's code: ISO 4217 exponents for the amount check.
function amountText(minor, cur) {
  const exp = { JPY: 0, KRW: 0, ISK: 0, CLP: 0, VND: 0, BHD: 3, KWD: 3, JOD: 3, OMR: 3, TND: 3 }[cur] ?? 2;
  const major = exp ? (BigInt(minor) / 10n ** BigInt(exp)).toString() : String(minor);
  const frac = exp ? "." + (BigInt(minor) % 10n ** BigInt(exp)).toString().padStart(exp, "0") : "";
  return major.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + frac + " " + cur;
}

const browser = await launch();
let page, chart = null, chartLive = null;
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  page = await context.newPage();
  page.setDefaultTimeout(T);
  page.on("console", (m) => {
    const line = `${m.type()}: ${m.text()}`;
    consoleLines.push(line);
    // a refused request (401 of the bad token, the simulated outage) is
    // expected; a CSP violation or a script error is not
    if (m.type() === "error" && !/^Failed to load resource/.test(m.text())) problems.push(line);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  lap("launch");

  // ---- the page itself
  const resp = await page.goto(url, { waitUntil: "load" });
  check(resp.status() === 200, `GET / answered ${resp.status()}`);
  const csp = resp.headers()["content-security-policy"] || "";
  await page.locator(tid("signin")).waitFor({ state: "visible" });
  const unlabeled = await page.evaluate(() =>
    [...document.querySelectorAll("input,select,textarea")]
      .filter((e) => !e.labels.length && !e.getAttribute("aria-label"))
      .map((e) => e.id || e.outerHTML.slice(0, 60)));
  check(unlabeled.length === 0, `form fields without a label: ${unlabeled}`);
  lap("load_page");

  // ---- a wrong token: stays on sign-in, says so
  await page.locator(tid("token-input")).fill("not-the-token");
  await page.locator(tid("token-input")).press("Enter");
  await page.locator(tid("signin-error")).filter({ hasText: "not accepted" }).waitFor();
  check(await page.evaluate(() => sessionStorage.length) === 0, "a rejected token was stored");

  // ---- sign in (keyboard only)
  await page.locator(tid("token-input")).fill(token);
  await page.locator(tid("token-input")).press("Enter");
  await page.locator("body[data-ready]").waitFor();
  lap("sign_in_to_list");
  const store = await page.evaluate(() => ({
    session: sessionStorage.getItem("cardwatch.token"), local: localStorage.length,
    href: location.href, cookie: document.cookie }));
  check(store.session === token, "the token is not in sessionStorage");
  check(store.local === 0, "localStorage is used");
  check(!store.href.includes(token) && !store.cookie.includes(token), "the token leaked into the URL or a cookie");

  // ---- the list: count, newest first, masked PANs, amounts
  const rows = page.locator(tid("alert-row"));
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="alert-row"]').length === n,
    spec.count, { timeout: T }).catch(async () => {
      throw new Error(`expected ${spec.count} alert rows, the page shows ${await rows.count()}`);
    });
  const ids = await rows.evaluateAll((rs) => rs.map((r) => r.getAttribute("data-alert-id")));
  const feed = await api(`/v1/alerts?limit=${spec.count + 10}`);
  check(feed.status === 200, `GET /v1/alerts answered ${feed.status}`);
  const feedIds = feed.body.alerts.slice().reverse()
    .sort((p, q) => q.alert.event_time_ms - p.alert.event_time_ms).map((x) => x.alert.alert_id);
  check(JSON.stringify(ids) === JSON.stringify(feedIds), `rows are not newest event first:\n${ids}\n${feedIds}`);
  const listText = await page.locator(tid("alert-table")).innerText();
  for (const pan of spec.pans || []) check(listText.includes(pan), `masked PAN ${pan} is not listed`);
  for (const { alert: a } of feed.body.alerts.slice(-50)) {
    const row = page.locator(`${tid("alert-row")}[data-alert-id="${a.alert_id}"]`);
    const amt = await row.locator(tid("alert-amount")).innerText();
    check(amt === amountText(a.amount_minor, a.currency), `amount of ${a.txn_id}: ${amt}, expected ${amountText(a.amount_minor, a.currency)}`);
    const sev = await row.locator(tid("severity-badge")).innerText();
    check(sev.toLowerCase() === a.severity, `severity badge ${sev} for ${a.severity}`);
    check((await row.locator(tid("alert-merchant")).innerText()).includes(a.merchant_id), "merchant id missing");
    for (const h of a.hits) check((await row.locator(tid("alert-rules")).innerText()).includes(h.rule_id), `rule ${h.rule_id} missing`);
  }
  await page.locator(`${tid("stat-alerts")}:text-is("${spec.count}")`).waitFor();
  chart = await chartData();
  check(chart && chart.drawn, "the chart is not drawn");

  // ---- filters
  for (const [sev, n] of Object.entries(spec.severity || {})) {
    await page.locator(tid("filter-severity")).selectOption(sev);
    const got = await rows.evaluateAll((rs) => rs.map((r) => r.getAttribute("data-severity")));
    check(got.length === n && got.every((s) => s === sev), `severity filter ${sev}: ${got.length} rows (${[...new Set(got)]}), expected ${n}`);
  }
  await page.locator(tid("filter-severity")).selectOption("");
  if (spec.rule) {
    const [rule, n] = spec.rule;
    await page.locator(tid("filter-rule")).selectOption(rule);
    const got = await rows.count();
    check(got === n, `rule filter ${rule}: ${got} rows, expected ${n}`);
    await page.locator(tid("filter-rule")).selectOption("");
  }
  check(await rows.count() === spec.count, "clearing the filters does not show every alert again");
  lap("filters");

  // ---- open one (keyboard) and record an outcome
  const first = feed.body.alerts[feed.body.alerts.length - 1].alert; // newest
  await page.locator(`${tid("alert-row")}[data-alert-id="${first.alert_id}"] ${tid("alert-pan")}`).focus();
  await page.keyboard.press("Enter");
  const detail = page.locator(tid("detail"));
  await detail.waitFor({ state: "visible" });
  check(await detail.locator(tid("detail-pan")).innerText() === first.pan_masked, "detail shows another card");
  check(await detail.locator(tid("detail-txn")).innerText() === first.txn_id, "detail shows another transaction");
  check(await detail.locator(tid("detail-hit")).count() === first.hits.length, "detail: wrong number of rule hits");
  check(await detail.locator(tid("detail-breach")).count() === first.breaches.length, "detail: wrong number of breaches");
  await page.locator(tid("outcome-form")).waitFor({ state: "visible" });
  const note = "called cardholder <script>window.pwned=1</script> & confirmed";
  await page.locator(tid("outcome-confirmed_fraud")).click();
  await page.locator(tid("outcome-note")).fill(note);
  const tOutcome = Date.now();
  await page.locator(tid("outcome-submit")).click();
  await page.locator(`${tid("detail-outcome")}[data-outcome="confirmed_fraud"]`).waitFor();
  timings.outcome_round_trip = Date.now() - tOutcome;
  check((await page.locator(tid("outcome-message")).innerText()).startsWith("Recorded"), "no 'Recorded' message");
  check((await page.locator(tid("detail-note")).innerText()).includes(note), "the note is not shown as text");
  check(await page.evaluate(() => window.pwned === undefined), "the note was executed as markup");
  check(await page.locator(`${tid("alert-row")}[data-alert-id="${first.alert_id}"] ${tid("alert-outcome")}`).innerText() === "Confirmed fraud",
    "the row does not show the outcome");
  const rec = await api(`/v1/alerts/${first.alert_id}`);
  check(rec.status === 200 && rec.body.outcome === "confirmed_fraud" && rec.body.note === note,
    `the API does not report the outcome: ${JSON.stringify(rec.body).slice(0, 300)}`);
  await page.locator(`${tid("stat-outcome-confirmed_fraud")}:text-is("1")`).waitFor();

  // ---- a conflict: another analyst records "legitimate" while this page
  // has the alert open; the page's "card_blocked" gets a 409
  const second = feed.body.alerts[feed.body.alerts.length - 2].alert;
  await page.locator(`${tid("alert-row")}[data-alert-id="${second.alert_id}"] ${tid("alert-pan")}`).click();
  await page.locator(tid("outcome-form")).waitFor({ state: "visible" });
  const other = await api(`/v1/alerts/${second.alert_id}/outcome`, { method: "POST", body: { outcome: "legitimate", note: "other analyst" } });
  check(other.status === 201, `POST outcome answered ${other.status}`);
  const again = await api(`/v1/alerts/${second.alert_id}/outcome`, { method: "POST", body: { outcome: "legitimate", note: "other analyst" } });
  check(again.status === 200, `the same outcome again answered ${again.status}, expected 200`);
  await page.locator(tid("outcome-card_blocked")).click();
  await page.locator(tid("outcome-submit")).click();
  const conflict = page.locator(tid("outcome-conflict"));
  await conflict.waitFor();
  check((await conflict.innerText()).includes("Legitimate"), "the conflict does not name the earlier outcome");
  await page.locator(`${tid("detail-outcome")}[data-outcome="legitimate"]`).waitFor();
  const rec2 = await api(`/v1/alerts/${second.alert_id}`);
  check(rec2.body.outcome === "legitimate", "the conflicting outcome replaced the first one");
  await page.keyboard.press("Escape");
  await detail.waitFor({ state: "hidden" });
  lap("outcomes");

  // ---- server unreachable: banner, retries, recovery (session kept)
  await page.context().route("**/v1/**", (r) => r.abort("connectionrefused"));
  await page.reload();
  const banner = page.locator(tid("banner"));
  await banner.filter({ hasText: "cannot be reached" }).waitFor();
  await banner.filter({ hasText: "attempt 3" }).waitFor();
  check(await page.locator(tid("live-status")).getAttribute("data-state") === "off", "the status does not say offline");
  await page.context().unroute("**/v1/**");
  await page.locator(tid("retry-now")).click();
  await page.locator("body[data-ready]").waitFor();
  await banner.waitFor({ state: "hidden" });
  check(await rows.count() === spec.count, "after recovery the list is incomplete");
  lap("outage_recovery");

  // ---- live: a new alert appears at the top without reload
  if (spec.live_alert_id) {
    await page.locator(`${tid("live-status")}[data-state="live"]`).waitFor();
    await new Promise((r) => setTimeout(r, 300)); // the long poll is out
    const tLive = Date.now();
    process.stdout.write("STEP live-alert\n");
    const liveRow = page.locator(`${tid("alert-row")}[data-alert-id="${spec.live_alert_id}"]`);
    await liveRow.waitFor({ timeout: Number(process.env.TRIAGE_LIVE_TIMEOUT_MS || 60000) });
    timings.live_alert_latency = Date.now() - tLive;
    check(await rows.first().getAttribute("data-alert-id") === spec.live_alert_id, "the live alert is not at the top");
    check(await liveRow.evaluate((r) => r.classList.contains("new")), "the live alert is not marked new");
    check(await page.locator(tid("new-count")).innerText() === "1", "the new-alert counter is not 1");
    if (spec.live_pan) check((await liveRow.innerText()).includes(spec.live_pan), "the live alert shows another card");
    check(await rows.count() === spec.count + 1, "the live alert did not add exactly one row");
    chartLive = await chartData();
    await page.locator(`${tid("stat-alerts")}:text-is("${spec.count + 1}")`).waitFor();
    check(!(await page.evaluate(() => location.href)).includes(token), "token in the URL");
    lap("live");
  }

  // ---- screenshot with the recorded alert open; DOM for the card scan
  await page.locator(`${tid("alert-row")}[data-alert-id="${first.alert_id}"] ${tid("alert-pan")}`).click();
  await page.locator(`${tid("detail-outcome")}[data-outcome="confirmed_fraud"]`).waitFor();
  await page.screenshot({ path: join(outdir, "triage.png"), fullPage: true });
  writeFileSync(join(outdir, "dom.html"), await page.content());
  writeFileSync(join(outdir, "dom.txt"), await page.evaluate(() => document.body.innerText));
  lap("screenshot");

  // ---- a token revoked mid-session: back to sign-in with a message
  await page.evaluate(() => sessionStorage.setItem("cardwatch.token", "revoked-token"));
  await page.reload();
  await page.locator(tid("signin-error")).filter({ hasText: "not accepted" }).waitFor();
  check(await page.evaluate(() => sessionStorage.length) === 0, "a rejected token stayed in sessionStorage");

  // ---- sign in and out again
  await page.locator(tid("token-input")).fill(token);
  await page.locator(tid("signin-button")).click();
  await page.locator("body[data-ready]").waitFor();
  await page.locator(tid("sign-out")).click();
  await page.locator(tid("signin")).waitFor({ state: "visible" });
  check(await page.evaluate(() => sessionStorage.length + localStorage.length) === 0, "the token survived sign-out");
  check(await rows.count() === 0, "alerts stay on the page after sign-out");
  lap("sign_out");

  check(problems.length === 0, `console errors:\n${problems.join("\n")}`);
  const htmlBytes = Buffer.byteLength(await (await fetch(url)).text());
  timings.total = Date.now() - t0;
  delete chart.drawn;
  if (chartLive) delete chartLive.drawn;
  const result = { ok: true, timings, csp, page_bytes: htmlBytes, console: consoleLines.length, chart,
    chart_live: chartLive,
    outcomes: { [first.alert_id]: "confirmed_fraud", [second.alert_id]: "legitimate" } };
  writeFileSync(join(outdir, "result.json"), JSON.stringify(result, null, 2) + "\n");
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
} catch (e) {
  if (page) {
    await page.screenshot({ path: join(outdir, "failure.png"), fullPage: true }).catch(() => {});
    writeFileSync(join(outdir, "failure-dom.html"), await page.content().catch(() => ""));
  }
  console.error(`FAIL: ${e.message}`);
  process.exitCode = 1;
} finally {
  writeFileSync(join(outdir, "console.log"), consoleLines.join("\n") + "\n");
  await browser.close();
}
