// A hospital identity provider on loopback, for the sign-in tests (tests/api/sso.rs) and the
// demo (scripts/demo.sh): npm `oidc-provider` (an OpenID Certified OP), with a sign-in page of
// its own that checks passwords, consent skipped for the registered (first-party) clients, and
// users whose `groups` claim is put in the ID token.
//
//   node scripts/oidc_provider.mjs CONFIG_JSON      (NODE_PATH: the bootstrap's node_modules)
//
// CONFIG_JSON: { port (0: any), clients: [{ client_id, client_secret?, redirect_uris }],
//                users: [{ username, password, name, groups, fhirUser? }], stop_with_stdin? }
//
// It is also the EHR's SMART authorization server: `ISSUER/fhir/.well-known/smart-configuration`
// describes it (so `ISSUER/fhir` is the `iss` of a launch), `launch` is an authorization
// parameter, and the token response carries the launch context (`patient`, `appContext`) that
// the EHR registered with `POST /ehr/launches {patient, appContext}` -> `{launch}`.
//
// With `ehr: { cards_file }` it also stands in for the EHR's screen: `GET /ehr` shows each
// patient's brain MRI order and the CDS cards neurocds answered (read from cards_file, a JSON
// array of { patient: {id, name}, order, cards }), rendered as an EHR would, with each link live —
// a `smart` link registers a launch for that patient with the card's appContext and opens
// `link.url?iss=ISSUER/fhir&launch=…`, as the EHR does when a clinician clicks it.
// Prints one line of JSON when it listens: { "issuer": "http://127.0.0.1:PORT" }, then logs
// nothing to stdout. Stops on SIGTERM, or (stop_with_stdin) when stdin closes: the test that
// started it ended.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';

// The package lives in the bootstrap cache, not in the checkout.
const { default: Provider } = await import(pathToFileURL(`${process.env.NODE_PATH}/oidc-provider/lib/index.js`).href);

const config = JSON.parse(process.argv[2]);
const users = new Map(config.users.map((u) => [u.username, u]));
// SMART: launch id -> {patient, appContext}; authorization code -> launch id.
const launches = new Map();
const codeLaunch = new Map();
const readJson = (req) => new Promise((resolve, reject) => {
  let body = '';
  req.on('data', (chunk) => { body += chunk; if (body.length > 64 * 1024) req.destroy(); });
  req.on('end', () => { try { resolve(JSON.parse(body)); } catch (e) { reject(e); } });
  req.on('error', reject);
});

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const loginPage = (uid, error) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Hospital sign-in</title>
<style>body{font-family:system-ui,sans-serif;background:#eef1f4;margin:0}main{max-width:360px;margin:4rem auto;background:#fff;padding:1.5rem 2rem;border-radius:6px;border:1px solid #d5dae0}
label{display:block;margin:.6rem 0 .2rem;font-size:.9rem}input{width:100%;padding:.4rem;box-sizing:border-box}button{margin-top:1rem;padding:.5rem 1rem}.error{color:#a00}</style></head>
<body><main><h1>Hospital sign-in</h1>${error ? `<p class="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label for="username">User name</label><input id="username" name="username" autocomplete="username" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button></form></main></body></html>`;

const readForm = (req) => new Promise((resolve, reject) => {
  let body = '';
  req.on('data', (chunk) => { body += chunk; if (body.length > 64 * 1024) req.destroy(); });
  req.on('end', () => resolve(new URLSearchParams(body)));
  req.on('error', reject);
});

const server = createServer();
await new Promise((resolve) => server.listen(config.port || 0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const provider = new Provider(issuer, {
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    ...(c.client_secret ? { client_secret: c.client_secret } : { token_endpoint_auth_method: 'none' }),
    redirect_uris: c.redirect_uris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
  })),
  jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'idp-key-1', use: 'sig', alg: 'RS256' }] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], profile: ['name', 'preferred_username'], groups: ['groups'], fhirUser: ['fhirUser'] },
  scopes: ['openid', 'profile', 'groups', 'fhirUser', 'launch', 'patient/Patient.rs'],
  extraParams: ['launch'],
  // The requested claims go in the ID token itself (the relying party reads roles from it).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const user = users.get(id);
    if (!user) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, name: user.name, preferred_username: id, groups: user.groups, fhirUser: user.fhirUser }) };
  },
  // First-party clients: every scope and claim asked for is granted without a consent screen.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(' '));
    grant.addOIDCClaims([...ctx.oidc.requestParamClaims]);
    await grant.save();
    return grant;
  },
  ttl: { Session: 3600, Interaction: 600, Grant: 3600, AuthorizationCode: 60, IdToken: 300, AccessToken: 300 },
});
provider.on('server_error', (ctx, err) => console.error('oidc-provider server_error', err));

// The SMART launch context: remember which launch each issued code belongs to, and put the
// launch's context in the token response.
provider.use(async (ctx, next) => {
  await next();
  const route = ctx.oidc?.route;
  if ((route === 'authorization' || route === 'resume') && ctx.oidc.params?.launch) {
    const location = ctx.response.get('location');
    const code = location ? new URL(location, issuer).searchParams.get('code') : null;
    if (code) codeLaunch.set(code, ctx.oidc.params.launch);
  }
  if (route === 'token' && ctx.status === 200 && ctx.body?.access_token) {
    const launch = launches.get(codeLaunch.get(ctx.oidc.params?.code));
    if (launch) Object.assign(ctx.body, { patient: launch.patient, appContext: launch.appContext, need_patient_banner: false });
  }
});

const callback = provider.callback();

const ehrCards = () => {
  try { return JSON.parse(readFileSync(config.ehr.cards_file, 'utf8')); } catch { return []; }
};
const ehrPage = () => {
  const rows = ehrCards().map((entry, i) => `<section class="patient"><h2>${escape(entry.patient?.name ?? entry.patient?.id)} <small>${escape(entry.patient?.id ?? '')}</small></h2>
<p class="order">Order: ${escape(entry.order ?? 'MRI brain with and without contrast')}</p>
${(entry.cards ?? []).map((card, j) => `<div class="card ${escape(card.indicator)}"><p class="summary">${escape(card.summary)}</p>
${card.detail ? `<pre>${escape(card.detail)}</pre>` : ''}
<p class="source">Source: ${escape(card.source?.label ?? '')}</p>
${(card.links ?? []).map((link, k) => link.type === 'smart'
    ? `<a class="smart" href="/ehr/launch?entry=${i}&card=${j}&link=${k}">${escape(link.label)}</a>`
    : `<a class="absolute" href="${escape(link.url)}">${escape(link.label)}</a>`).join(' ')}
</div>`).join('')}</section>`).join('') || '<p>No orders yet.</p>';
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>EHR: orders and decision support</title>
<style>body{font-family:system-ui,sans-serif;background:#e8edf2;margin:0}header{background:#2b4b6f;color:#fff;padding:.6rem 1rem}main{max-width:960px;margin:1rem auto}
section.patient{background:#fff;border:1px solid #c9d3dd;border-radius:6px;padding:1rem;margin-bottom:1rem}.card{border-left:6px solid #888;background:#f7f9fb;padding:.6rem .8rem;margin:.6rem 0}
.card.warning{border-color:#e0a000}.card.info{border-color:#3b82c4}.card.critical{border-color:#c0392b}.summary{font-weight:600}pre{white-space:pre-wrap;font-size:.85rem}a{margin-right:1rem}</style></head>
<body><header>EHR stand-in · order entry · CDS Hooks cards</header><main>${rows}</main></body></html>`;
};
const smartConfiguration = () => ({
  issuer,
  jwks_uri: `${issuer}/jwks`,
  authorization_endpoint: `${issuer}/auth`,
  token_endpoint: `${issuer}/token`,
  grant_types_supported: ['authorization_code'],
  response_types_supported: ['code'],
  code_challenge_methods_supported: ['S256'],
  token_endpoint_auth_methods_supported: ['client_secret_basic', 'none'],
  scopes_supported: ['openid', 'fhirUser', 'launch', 'patient/Patient.rs'],
  capabilities: ['launch-ehr', 'client-public', 'client-confidential-symmetric', 'sso-openid-connect', 'context-ehr-patient', 'permission-v2'],
});
server.on('request', async (req, res) => {
  if (req.method === 'GET' && req.url === '/fhir/.well-known/smart-configuration') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify(smartConfiguration()));
  }
  if (config.ehr && req.method === 'GET' && req.url === '/ehr') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    return res.end(ehrPage());
  }
  if (config.ehr && req.method === 'GET' && req.url.startsWith('/ehr/launch?')) {
    const q = new URL(req.url, issuer).searchParams;
    const entry = ehrCards()[Number(q.get('entry'))];
    const link = entry?.cards?.[Number(q.get('card'))]?.links?.[Number(q.get('link'))];
    if (!link || link.type !== 'smart') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      return res.end('no such card link');
    }
    const launch = randomBytes(12).toString('hex');
    launches.set(launch, { patient: entry.patient.id, appContext: link.appContext });
    const target = new URL(link.url);
    target.searchParams.set('iss', `${issuer}/fhir`);
    target.searchParams.set('launch', launch);
    res.writeHead(302, { location: target.href });
    return res.end();
  }
  if (req.method === 'POST' && req.url === '/ehr/launches') {
    try {
      const { patient, appContext } = await readJson(req);
      const launch = randomBytes(12).toString('hex');
      launches.set(launch, { patient, appContext });
      res.writeHead(201, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ launch }));
    } catch (e) {
      res.writeHead(400, { 'content-type': 'text/plain' });
      return res.end(`not a launch: ${e.message}`);
    }
  }
  const m = req.url.match(/^\/interaction\/([\w-]+)(\/login)?$/);
  if (!m) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      return res.end(loginPage(details.uid));
    }
    const form = await readForm(req);
    const user = users.get(form.get('username') ?? '');
    if (!user || user.password !== form.get('password')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      return res.end(loginPage(details.uid, 'Wrong user name or password.'));
    }
    await provider.interactionFinished(req, res, { login: { accountId: user.username } }, { mergeWithLastSubmission: false });
  } catch (err) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(`sign-in failed: ${err.message}`);
  }
});

process.stdout.write(`${JSON.stringify({ issuer })}\n`);
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
if (config.stop_with_stdin) {
  process.stdin.on('end', stop);
  process.stdin.resume();
}
