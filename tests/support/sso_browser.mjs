// Staff signing in to the pages through the hospital's identity provider, in Debian's headless
// Chromium driven by npm puppeteer-core (JavaScript off, as in pages_browser.mjs). Each flow runs
// in a fresh incognito context (its own cookies); the script reports what the browser saw as
// one JSON array on stdout and the Rust test (tests/api/sso.rs) holds the assertions.
//
//   node sso_browser.mjs SCENARIO_JSON
//
// SCENARIO_JSON: { base, idp, artefacts, flows: [FLOW, …] }, FLOW one of
//   { kind: "sign-in", start, user: {username, password}, visit: [path…], wait_s?, revisit?: [path…],
//     replay_callback?: bool, sign_out?: bool, screenshot?: name }
//       opens `start`, signs in at the provider, then opens each `visit` path; after `wait_s`
//       seconds opens each `revisit` path; replays the callback URL; signs out through the header.
//   { kind: "tampered-state", user }   the provider's answer comes back with another `state`
//   { kind: "bad-nonce", user }        the authorization request is sent with another `nonce`
//   { kind: "ehr-launch", ehr, user, screenshot_ehr?, screenshot? }
//       opens the EHR stand-in page `ehr`, clicks the first card's SMART link, signs in at the
//       EHR's authorization server and reports where the launch landed.
import { createRequire } from 'node:module';

const require = createRequire(`${process.env.NODE_PATH}/`);
const puppeteer = require('puppeteer-core');

const scenario = JSON.parse(process.argv[2]);
const { base, idp } = scenario;

async function seen(page, response) {
  return page.evaluate((status, contentType) => ({
    url: location.href,
    status,
    content_type: contentType,
    title: document.title,
    h1: document.querySelector('h1')?.innerText.trim() ?? null,
    text: document.body?.innerText ?? '',
    signout_form: !!document.querySelector('header form[action="/logout"]'),
    login_form: !!document.querySelector('form[action^="/interaction/"]'),
  }), response?.status() ?? null, response?.headers()['content-type'] ?? null);
}

/// Opens a URL as a link would; a download (an export: the browser aborts the navigation) is
/// fetched instead with the browser's cookies for it (from Node: the pages' CSP allows no
/// fetch), and reported the same way.
async function visit(page, url) {
  try {
    return await seen(page, await page.goto(url, { waitUntil: 'load' }));
  } catch (e) {
    if (!String(e).includes('ERR_ABORTED')) throw e;
    const cookie = (await page.cookies(url)).map((c) => `${c.name}=${c.value}`).join('; ');
    const r = await fetch(url, { headers: { cookie, accept: 'text/html,*/*' }, redirect: 'manual' });
    return { url, status: r.status, content_type: r.headers.get('content-type'), download: true, text: (await r.text()).slice(0, 4000) };
  }
}

async function signInAtProvider(page, user) {
  if (!page.url().startsWith(idp)) throw new Error(`expected the provider's sign-in page, got ${page.url()}`);
  await page.type('#username', user.username);
  await page.type('#password', user.password);
  const [response] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('button[type=submit]')]);
  return response;
}

/// Every top-level URL the tab asked for (redirects included), in order.
function recordRequests(page) {
  const urls = [];
  page.on('request', (r) => { if (r.isNavigationRequest() && r.frame() === page.mainFrame()) urls.push(r.url()); });
  return urls;
}

const flows = {
  async 'sign-in'(page, flow) {
    const out = { kind: flow.kind, pages: [], revisits: [] };
    const requests = recordRequests(page);
    await page.goto(`${base}${flow.start}`, { waitUntil: 'load' });
    out.at_provider = page.url().startsWith(idp);
    out.after_sign_in = await seen(page, await signInAtProvider(page, flow.user));
    if (flow.screenshot) await page.screenshot({ path: `${scenario.artefacts}/${flow.screenshot}`, fullPage: true });
    for (const path of flow.visit ?? []) {
      out.pages.push({ path, ...(await visit(page, `${base}${path}`)) });
    }
    if (flow.wait_s) await new Promise((r) => setTimeout(r, flow.wait_s * 1000));
    for (const path of flow.revisit ?? []) {
      const before = requests.length;
      const response = await page.goto(`${base}${path}`, { waitUntil: 'load' });
      out.revisits.push({ path, requests: requests.slice(before), ...(await seen(page, response)) });
    }
    out.callback = requests.find((u) => u.startsWith(`${base}/auth/callback`)) ?? null;
    if (flow.replay_callback && out.callback) {
      out.replayed = await seen(page, await page.goto(out.callback, { waitUntil: 'load' }));
    }
    if (flow.sign_out) {
      await page.goto(`${base}/audit`, { waitUntil: 'load' });
      const [response] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('header form[action="/logout"] button[type=submit]')]);
      out.signed_out = await seen(page, response);
      const before = requests.length;
      const again = await page.goto(`${base}/audit`, { waitUntil: 'load' });
      out.after_sign_out = { requests: requests.slice(before), ...(await seen(page, again)) };
    }
    out.requests = requests;
    return out;
  },

  async 'tampered-state'(page, flow) {
    await page.goto(`${base}/login?return_to=/audit`, { waitUntil: 'load' });
    await page.setRequestInterception(true);
    let callback = null;
    const intercept = (r) => {
      if (r.url().startsWith(`${base}/auth/callback`)) { callback = r.url(); r.abort(); } else r.continue();
    };
    page.on('request', intercept);
    await signInAtProvider(page, flow.user).catch(() => null);
    page.off('request', intercept);
    await page.setRequestInterception(false);
    if (!callback) throw new Error('the provider never sent the browser back');
    const tampered = new URL(callback);
    tampered.searchParams.set('state', `${tampered.searchParams.get('state')}x`);
    const first = await seen(page, await page.goto(tampered.href, { waitUntil: 'load' }));
    const genuine_after = await seen(page, await page.goto(callback, { waitUntil: 'load' }));
    return { kind: flow.kind, tampered: first, genuine_after };
  },

  async 'ehr-launch'(page, flow) {
    const out = { kind: flow.kind };
    await page.goto(flow.ehr, { waitUntil: 'load' });
    out.ehr = await page.evaluate(() => ({
      cards: [...document.querySelectorAll('.card')].map((c) => ({
        summary: c.querySelector('.summary')?.innerText.trim(),
        smart_links: [...c.querySelectorAll('a.smart')].map((a) => a.innerText.trim()),
      })),
    }));
    if (flow.screenshot_ehr) await page.screenshot({ path: `${scenario.artefacts}/${flow.screenshot_ehr}`, fullPage: true });
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('.card a.smart')]);
    out.at_provider = page.url().startsWith(idp);
    out.after_sign_in = await seen(page, await signInAtProvider(page, flow.user));
    if (flow.screenshot) await page.screenshot({ path: `${scenario.artefacts}/${flow.screenshot}`, fullPage: true });
    return out;
  },

  async 'bad-nonce'(page, flow) {
    let authorize = null;
    page.on('request', (r) => { if (!authorize && r.url().startsWith(`${idp}/auth?`)) authorize = r.url(); });
    await page.goto(`${base}/login?return_to=/audit`, { waitUntil: 'load' });
    if (!authorize) throw new Error('no authorization request was seen');
    const forged = new URL(authorize);
    forged.searchParams.set('nonce', 'a-nonce-this-sign-in-never-made');
    await page.goto(forged.href, { waitUntil: 'load' });
    return { kind: flow.kind, result: await seen(page, await signInAtProvider(page, flow.user)) };
  },
};

const browser = await puppeteer.launch({
  executablePath: process.env.NEUROCDS_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--font-render-hinting=none'],
});
const results = [];
try {
  for (const flow of scenario.flows) {
    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    await page.setViewport({ width: 1280, height: 900, deviceScaleFactor: 1 });
    await page.setJavaScriptEnabled(false);
    try {
      results.push(await flows[flow.kind](page, flow));
    } catch (e) {
      results.push({ kind: flow.kind, error: String(e?.stack ?? e), url: page.url() });
    }
    await context.close();
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(results));
