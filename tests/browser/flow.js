// The dashboard in a real browser (driven by tests/browser.rs, which starts the server):
// ranking → team → KPI → back; edit a target with a preview, a rejected edit's error next to
// its field, save and see the new target; no sideways scroll at 360 px; screenshots.
// Environment: BASE (server URL), TOKEN (admin token), OUT (screenshot folder), CHROMIUM.
"use strict";
const { chromium } = require("playwright-core");
const fs = require("fs");
const os = require("os");
const path = require("path");

const BASE = process.env.BASE, TOKEN = process.env.TOKEN, OUT = process.env.OUT;
function check(ok, what) {
  if (!ok) throw new Error("failed: " + what);
  console.log("ok: " + what);
}

(async () => {
  fs.mkdirSync(OUT, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "kpi-chromium-"));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1440, height: 1000 },
  });
  try {
    const page = ctx.pages()[0] || await ctx.newPage();
    page.setDefaultTimeout(30000);
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));

    // Ranking → team.
    await page.goto(BASE + "/?scorecard=sales&level=leaves");
    await page.screenshot({ path: path.join(OUT, "home-1440.png"), fullPage: true });
    const first = page.locator("table.ranking a.name").first();
    const teamName = (await first.textContent()).trim();
    await first.click();
    await page.waitForURL(/\/teams\//);
    check((await page.locator("h1").textContent()).trim() === teamName, "the ranking links to the team page of " + teamName);
    check(await page.locator("svg.chart .axis").count() > 0, "the team page has charts with axes");
    check(await page.locator("svg.chart .target").count() > 0, "the charts have target lines");
    await page.screenshot({ path: path.join(OUT, "team-1440.png"), fullPage: true });
    const teamUrl = page.url();

    // Team → KPI.
    const kpi = page.locator("table.lines th.kpi a").first();
    const kpiName = (await kpi.textContent()).trim();
    await kpi.click();
    await page.waitForURL(/\/kpis\//);
    check((await page.locator("h1").textContent()).trim() === kpiName, "the team page links to the explain page of " + kpiName);
    check(await page.locator("pre.formula").count() === 1, "the explain page shows the formula");
    check(await page.locator("ol.queries li code").count() > 0, "the explain page lists the queries with their results");
    check(await page.locator("table.records tbody tr").count() > 0, "the explain page lists the records behind the value");
    await page.screenshot({ path: path.join(OUT, "kpi-1440.png"), fullPage: true });

    // Back.
    await page.goBack();
    await page.waitForURL(teamUrl);
    check((await page.locator("h1").textContent()).trim() === teamName, "back returns to the team page");

    // Edit a target with the preview, a rejected edit, save.
    await page.goto(BASE + "/?scorecard=sales");
    await page.fill("#admin-token", TOKEN);
    await page.click("#token-save");
    check((await ctx.cookies()).some((c) => c.name === "kpi_admin"), "the admin token is kept in a cookie");
    const weight = page.locator('input[data-weight="win_rate"]');
    await weight.fill("-1");
    await page.waitForFunction(() => document.querySelector('td.err[data-err="win_rate"]').textContent.length > 0);
    check(true, "a rejected edit shows its error next to the field: " +
      await page.locator('td.err[data-err="win_rate"]').textContent());
    await weight.fill(await weight.getAttribute("data-was"));
    const target = page.locator('input[data-target="forecast_accuracy"]');
    await target.fill("0.8");
    await page.waitForSelector("#preview table tbody tr");
    const previewRows = await page.locator("#preview table tbody tr").count();
    check(previewRows > 0, "the preview lists " + previewRows + " teams with their rank change");
    await page.screenshot({ path: path.join(OUT, "edit-1440.png"), fullPage: true });
    // Below the key's threshold (0.75): the PUT refuses it, and says so beside the field.
    await target.fill("0.5");
    await page.waitForSelector("#preview table tbody tr");
    await page.click("#edit-save");
    await page.waitForFunction(() => document.querySelector('td.err[data-err="forecast_accuracy"]').textContent.includes("threshold"));
    check(true, "a refused save shows its error next to the field: " +
      await page.locator('td.err[data-err="forecast_accuracy"]').textContent());
    await target.fill("0.8");
    await page.waitForSelector("#preview table tbody tr");
    await Promise.all([page.waitForNavigation(), page.click("#edit-save")]);
    await page.waitForSelector('input[data-target="forecast_accuracy"][data-was="0.8"]');
    const cells = await page.locator("table.matrix tr", { hasText: "forecast_accuracy" }).locator("td.cell .t").allTextContents();
    check(cells.length > 0 && cells.every((c) => c.includes("80.0%")), "after saving, every team's target is 80.0%: " + cells.join(" | "));

    // Phones: no sideways scroll of the page.
    await page.setViewportSize({ width: 360, height: 780 });
    for (const [name, url] of [["home", "/?scorecard=sales"], ["team", teamUrl.replace(BASE, "")],
      ["alerts", "/alerts?state=all"], ["history", "/history"], ["zh", "/?scorecard=sales&lang=zh"]]) {
      await page.goto(BASE + url);
      const [sw, iw] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      check(sw <= iw, `no horizontal scroll at 360 px on ${name} (${sw} <= ${iw})`);
      await page.screenshot({ path: path.join(OUT, name + "-360.png"), fullPage: true });
    }
    check(errors.length === 0, "no script errors: " + errors.join("; "));
  } finally {
    await ctx.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
})().catch((e) => { console.error(e); process.exit(1); });
