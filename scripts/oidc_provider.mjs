// A hospital identity provider on loopback, for the sign-in tests (tests/api/sso.rs) and the
// demo (scripts/demo.sh): npm `oidc-provider` (an OpenID Certified OP), with a sign-in page of
// its own that checks passwords, consent skipped for the registered (first-party) clients, and
// users whose `groups` claim is put in the ID token.
//
//   node scripts/oidc_provider.mjs CONFIG_JSON      (NODE_PATH: the bootstrap's node_modules)
//
// CONFIG_JSON: { port (0: any), clients: [{ client_id, client_secret?, redirect_uris }],
//                users: [{ username, password, name, groups }], stop_with_stdin? }
// Prints one line of JSON when it listens: { "issuer": "http://127.0.0.1:PORT" }, then logs
// nothing to stdout. Stops on SIGTERM, or (stop_with_stdin) when stdin closes: the test that
// started it ended.
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';

// The package lives in the bootstrap cache, not in the checkout.
const { default: Provider } = await import(pathToFileURL(`${process.env.NODE_PATH}/oidc-provider/lib/index.js`).href);

const config = JSON.parse(process.argv[2]);
const users = new Map(config.users.map((u) => [u.username, u]));

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
  claims: { openid: ['sub'], profile: ['name', 'preferred_username'], groups: ['groups'] },
  scopes: ['openid', 'profile', 'groups'],
  // The requested claims go in the ID token itself (the relying party reads roles from it).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const user = users.get(id);
    if (!user) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, name: user.name, preferred_username: id, groups: user.groups }) };
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

const callback = provider.callback();
server.on('request', async (req, res) => {
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
