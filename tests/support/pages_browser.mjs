// A member of staff in a browser: Debian's headless Chromium, driven by npm puppeteer-core, with
// JavaScript switched off in the pages (they must work without it). The script clicks and types
// like a person and reports what the pages show, as one JSON object on stdout; the Rust test
// (tests/api/pages.rs) holds the assertions.
//
//   node pages_browser.mjs SCENARIO_JSON      (NEUROCDS_CHROMIUM: another browser binary)
//
// SCENARIO_JSON: { base, token, filters: [{field: value, …}, …], artefacts }
//   - opens /audit without a cookie (expects the sign-in form), pastes `token`, signs in;
//   - on the decision log, applies each filter in turn through the form (fields not named are
//     set back to "any"/empty) and reads the rows shown;
//   - follows the first row's "report" link, reads the case report;
//   - opens the model card from the header link;
//   - opens model monitoring from the header link, reads its tables and plots.
// Full-page screenshots land in `artefacts`: decision-log.png (unfiltered), case-report.png,
// model-card.png, monitoring.png.
import { createRequire } from 'node:module';

// The package lives in the bootstrap cache, not in the checkout: resolve it from NODE_PATH.
const require = createRequire(`${process.env.NODE_PATH}/`);
const puppeteer = require('puppeteer-core');

const scenario = JSON.parse(process.argv[2]);
const FORM_FIELDS = ['from', 'to', 'patient', 'practitioner', 'recommendation', 'outcome', 'model_version', 'feedback'];

// Every table on the page as rows of {header text: cell text}; links in a row under `href`.
const readTables = () =>
  [...document.querySelectorAll('table')].map((t) => {
    const heads = [...t.querySelectorAll('tr:first-child th')].map((th) => th.innerText.trim());
    return {
      id: t.id || null,
      heads,
      rows: [...t.querySelectorAll('tr')]
        .filter((tr) => tr.querySelector('td'))
        .map((tr) => {
          const cells = [...tr.children];
          const row = {};
          // Header-in-first-column tables (key/value) read as {key, value}.
          if (cells[0].tagName === 'TH') {
            row.key = cells[0].innerText.trim();
            row.value = cells.slice(1).map((c) => c.innerText.trim()).join(' ');
          } else {
            cells.forEach((c, i) => { row[heads[i] || `col${i}`] = c.innerText.trim(); });
          }
          const a = tr.querySelector('a[href]');
          if (a) row.href = a.getAttribute('href');
          return row;
        }),
    };
  });

async function readPage(page) {
  const seen = await page.evaluate(() => ({
    url: location.pathname + location.search,
    title: document.title,
    h1: document.querySelector('h1')?.innerText.trim() ?? null,
    text: document.body.innerText,
    scripts: document.scripts.length,
  }));
  seen.tables = await page.evaluate(readTables);
  return seen;
}

const browser = await puppeteer.launch({
  executablePath: process.env.NEUROCDS_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // --no-sandbox: as root or in a container (CI is both) Chromium's sandbox cannot start; the
  // only pages it opens are the service's own.
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--font-render-hinting=none'],
});
const out = {};
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900, deviceScaleFactor: 1 });
  // The pages are server-rendered and need no JavaScript: prove it by running them without.
  // (page.evaluate still works: DevTools runs it, not the page.)
  await page.setJavaScriptEnabled(false);

  // Signing in: no cookie yet, so the decision log sends the browser to the sign-in form.
  await page.goto(`${scenario.base}/audit`, { waitUntil: 'load' });
  out.before_signin = await readPage(page);
  await page.type('textarea[name=token]', scenario.token);
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('form[action="/login"] button[type=submit]')]);
  out.audit = await readPage(page);
  await page.screenshot({ path: `${scenario.artefacts}/decision-log.png`, fullPage: true });

  // The filters, through the form, as a person would use them.
  out.filtered = [];
  for (const filter of scenario.filters) {
    for (const name of FORM_FIELDS) {
      const value = filter[name] ?? '';
      const tag = await page.$eval(`form.filters [name=${name}]`, (e) => e.tagName);
      if (tag === 'SELECT') {
        await page.select(`form.filters select[name=${name}]`, value);
      } else {
        await page.$eval(`form.filters [name=${name}]`, (e) => { e.value = ''; });
        if (value) await page.type(`form.filters [name=${name}]`, value);
      }
    }
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('form.filters button[type=submit]')]);
    const seen = await readPage(page);
    seen.form = await page.$$eval('form.filters [name]', (els) => Object.fromEntries(els.map((e) => [e.name, e.value])));
    out.filtered.push(seen);
  }

  // The case report, from the first row's link.
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('table#decisions tr:nth-child(2) a[href^="/reports/"]')]);
  out.report = await readPage(page);
  out.report.badge = await page.$eval('.badge', (b) => ({ text: b.innerText.trim(), class: b.className }));
  out.report.images = await page.$$eval('img', (imgs) =>
    imgs.map((img) => {
      const box = img.getBoundingClientRect();
      return {
        alt: img.alt,
        caption: img.closest('figure')?.querySelector('figcaption')?.innerText.trim() ?? null,
        complete: img.complete,
        natural_width: img.naturalWidth,
        natural_height: img.naturalHeight,
        shown_width: Math.round(box.width),
        shown_height: Math.round(box.height),
      };
    }));
  await page.screenshot({ path: `${scenario.artefacts}/case-report.png`, fullPage: true });

  // The model card, from the header.
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('header a[href="/models"]')]);
  out.models = await readPage(page);
  await page.screenshot({ path: `${scenario.artefacts}/model-card.png`, fullPage: true });

  // Model monitoring, from the header: its tables, and what each plot draws.
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('header a[href="/monitoring"]')]);
  out.monitoring = await readPage(page);
  out.monitoring.plots = await page.$$eval('figure.quantity', (figs) =>
    figs.map((f) => {
      const svg = f.querySelector('svg');
      const box = svg?.getBoundingClientRect();
      return {
        quantity: f.dataset.quantity,
        caption: f.querySelector('figcaption')?.innerText.trim() ?? null,
        label: svg?.getAttribute('aria-label') ?? null,
        shown_width: box ? Math.round(box.width) : 0,
        reference_bars: f.querySelectorAll('rect.reference').length,
        live_bars: [...f.querySelectorAll('rect.live')].map((r) => ({ height: Number(r.getAttribute('height')), title: r.querySelector('title')?.textContent ?? '' })),
      };
    }));
  await page.screenshot({ path: `${scenario.artefacts}/monitoring.png`, fullPage: true });
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
