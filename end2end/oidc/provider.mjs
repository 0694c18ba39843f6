#!/usr/bin/env node
// Test-only OpenID Provider built on oidc-provider@9.13.3 (panva). NOT for production.
//
// Usage:
//   node provider.mjs --port 0 --clients '[{"client_id":"rp","client_secret":"s3cret",
//       "redirect_uris":["http://127.0.0.1:8080/callback"],
//       "post_logout_redirect_uris":["http://127.0.0.1:8080/"]}]'
//   (or OIDC_CLIENTS='<json>' / --clients-file path / OIDC_CLIENTS_FILE=path)
//
// Options / env:
//   --port N            (OIDC_PORT)       0 = ephemeral (default 0)
//   --host H            (OIDC_HOST)       default 127.0.0.1
//   --clients JSON      (OIDC_CLIENTS)    array (or single object) of client metadata
//   --clients-file P    (OIDC_CLIENTS_FILE)
//   --consent           (OIDC_CONSENT=1)  show the consent page (Allow/Deny) instead of auto-granting
//   --swap-aud FROM=TO  (OIDC_SWAP_AUD)   MISBEHAVE: requests made by client FROM are silently
//                                         processed as client TO, so tokens get aud=TO.
//                                         TO is auto-registered as a clone of FROM if absent.
//   --profile-in-userinfo                 oidc-provider's default: the ID token carries only sub
//                                         & co., profile and e-mail come from UserInfo
//   --resource-servers                    an authorization server for protected resources (MCP
//                                         servers): open dynamic client registration, resource
//                                         indicators (any http://127.0.0.1 resource gets JWT access
//                                         tokens with scope `mcp` and aud = the resource), refresh
//                                         tokens for every client allowed them, token revocation
//   --access-token-ttl N                  those access tokens' lifetime in seconds (default 3600)
//   --verbose           (OIDC_VERBOSE=1)  show oidc-provider notices/warnings on stderr
//
// stdout: exactly one line, {"issuer":"http://127.0.0.1:PORT"}, once listening. Everything else -> stderr.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

// ---------------------------------------------------------------- options
const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string' },
    clients: { type: 'string' },
    'clients-file': { type: 'string' },
    consent: { type: 'boolean' },
    'swap-aud': { type: 'string' },
    'profile-in-userinfo': { type: 'boolean' },
    'resource-servers': { type: 'boolean' },
    'access-token-ttl': { type: 'string' },
    verbose: { type: 'boolean' },
  },
  strict: true,
});
const env = process.env;
const truthy = (v) => v !== undefined && !['', '0', 'false', 'no'].includes(String(v).toLowerCase());

const PORT = Number(args.port ?? env.OIDC_PORT ?? 0);
const HOST = args.host ?? env.OIDC_HOST ?? '127.0.0.1';
const SHOW_CONSENT = Boolean(args.consent) || truthy(env.OIDC_CONSENT);
const VERBOSE = Boolean(args.verbose) || truthy(env.OIDC_VERBOSE);
const SWAP_SPEC = args['swap-aud'] ?? env.OIDC_SWAP_AUD ?? '';
const RESOURCE_SERVERS = Boolean(args['resource-servers']);
const ACCESS_TOKEN_TTL = Number(args['access-token-ttl'] ?? 3600);

// stdout is reserved for the single "ready" line: route all console output to stderr and
// drop oidc-provider's NOTICE/WARNING chatter (it uses console.info -> stdout!) unless --verbose.
// Must happen BEFORE importing oidc-provider (it warns at import time on Node < 22 LTS).
for (const m of ['log', 'info', 'warn', 'error', 'debug']) {
  console[m] = (...a) => {
    if (!VERBOSE && typeof a[0] === 'string' && a[0].includes('oidc-provider ')
        && /oidc-provider (NOTICE|WARNING)/.test(a[0])) return;
    process.stderr.write(`${a.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(' ')}\n`);
  };
}
const { default: Provider, errors } = await import('oidc-provider');

function die(msg) {
  process.stderr.write(`provider.mjs: ${msg}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------- clients
let clientsJson = args.clients ?? env.OIDC_CLIENTS;
const clientsFile = args['clients-file'] ?? env.OIDC_CLIENTS_FILE;
if (!clientsJson && clientsFile) clientsJson = fs.readFileSync(clientsFile, 'utf8');
let rawClients = [];
if (clientsJson) {
  try { rawClients = JSON.parse(clientsJson); } catch (e) { die(`invalid clients JSON: ${e.message}`); }
  if (!Array.isArray(rawClients)) rawClients = rawClients.clients ?? [rawClients];
}
const clients = rawClients.map((c) => ({
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['authorization_code'],
  response_types: ['code'],
  post_logout_redirect_uris: [],
  ...c,
}));

let swap;
if (SWAP_SPEC) {
  const [from, to] = SWAP_SPEC.split(/[=:]/);
  if (!from || !to) die('--swap-aud expects FROM=TO');
  const fromClient = clients.find((c) => c.client_id === from);
  let toClient = clients.find((c) => c.client_id === to);
  if (!toClient) {
    if (!fromClient) die(`--swap-aud: neither ${from} nor ${to} is a registered client`);
    toClient = { ...structuredClone(fromClient), client_id: to };
    clients.push(toClient);
  }
  swap = { from, to, toSecret: toClient.client_secret };
}

// ---------------------------------------------------------------- accounts
const USERS = {
  alice: {
    password: 'alice-password',
    claims: {
      name: 'Alice Anderson', given_name: 'Alice', family_name: 'Anderson', preferred_username: 'alice',
      email: 'alice@example.com', email_verified: true, groups: ['admins', 'users'],
    },
  },
  bob: {
    password: 'bob-password',
    claims: {
      name: 'Bob Brown', given_name: 'Bob', family_name: 'Brown', preferred_username: 'bob',
      email: 'bob@example.com', email_verified: true, groups: ['users'],
    },
  },
  // Deactivated and limited by the organisation spec: nobody else's test signs in as her.
  carol: {
    password: 'carol-password',
    claims: {
      name: 'Carol Clark', given_name: 'Carol', family_name: 'Clark', preferred_username: 'carol',
      email: 'carol@example.com', email_verified: true, groups: ['users'],
    },
  },
};

async function findAccount(ctx, sub) {
  const user = USERS[sub];
  if (!user) return undefined;
  return {
    accountId: sub,
    // oidc-provider filters these by granted scopes / requested claims
    async claims(use, scope, claims, rejected) { return { sub, ...user.claims }; },
  };
}

// ---------------------------------------------------------------- keys
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', alg: 'RS256', use: 'sig' };

// ---------------------------------------------------------------- html helpers
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));
const page = (title, body, head = '') => `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${esc(title)}</title>${head}</head>
<body><h1>${esc(title)}</h1>
${body}
</body></html>`;

function loginPage(uid, clientId, error, login = '') {
  return page('Sign in', `
<p>Client: <code>${esc(clientId)}</code></p>
${error ? `<p id="error" class="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" id="login-form">
  <label>Username <input type="text" name="login" value="${esc(login)}" autofocus autocomplete="username"></label><br>
  <label>Password <input type="password" name="password" autocomplete="current-password"></label><br>
  <button type="submit">Sign in</button>
</form>
<p><a href="/interaction/${esc(uid)}/abort" id="cancel">Cancel</a></p>`);
}

function consentPage(uid, clientId, details) {
  const scopes = details.missingOIDCScope ?? [];
  const claims = details.missingOIDCClaims ?? [];
  return page('Authorize', `
<p>Client <code>${esc(clientId)}</code> requests: <code>${esc(scopes.join(' '))}</code>
${claims.length ? ` and claims <code>${esc(claims.join(' '))}</code>` : ''}</p>
<form method="post" action="/interaction/${esc(uid)}/confirm" id="allow-form"><button type="submit" name="decision" value="allow">Allow</button></form>
<form method="post" action="/interaction/${esc(uid)}/abort" id="deny-form"><button type="submit" name="decision" value="deny">Deny</button></form>`);
}

async function readForm(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

const b64 = (s) => Buffer.from(s, 'utf8').toString('base64');
// RFC 6749 2.3.1: client_id/secret are form-urlencoded before base64 in the Basic header
const formEnc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
const formDec = (s) => decodeURIComponent(s.replace(/\+/g, ' '));

// ---------------------------------------------------------------- server + provider
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(PORT, HOST, resolve);
});
const { port } = server.address();
const hostForUrl = HOST.includes(':') ? `[${HOST}]` : HOST;
const ISSUER = `http://${hostForUrl}:${port}`;

const configuration = {
  clients,
  jwks: { keys: [jwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  findAccount,
  claims: {
    openid: ['sub'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username', 'groups'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  // Default (true) puts only sub & co. in the ID token when an access token is also issued
  // (code flow) and defers profile/email claims to userinfo. Most tests want them in the ID
  // token; --profile-in-userinfo keeps the default.
  conformIdTokenClaims: Boolean(args['profile-in-userinfo']),
  pkce: { required: () => true }, // S256 is the only method oidc-provider v9 supports
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        // `form` is <form id="op.logoutForm" method="post" action="/session/end/confirm"> with a
        // hidden xsrf input. Add logout=yes and auto-submit (a <noscript> button for non-JS clients).
        const withLogout = form.replace('</form>',
          '<input type="hidden" name="logout" value="yes"/><noscript><button type="submit">Sign out</button></noscript></form>');
        ctx.type = 'html';
        ctx.body = page('Signing out', withLogout,
          "<script>document.addEventListener('DOMContentLoaded',function(){document.forms[0].submit()})</script>");
      },
      async postLogoutSuccessSource(ctx) {
        ctx.type = 'html';
        ctx.body = page('Signed out', '<p>You have been signed out.</p>');
      },
    },
  },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    let grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
    if (SHOW_CONSENT) return grant;
    // auto-consent: grant whatever OIDC scopes/claims were requested
    grant ??= new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope([...ctx.oidc.requestParamOIDCScopes].join(' '));
    for (const [indicator, resourceServer] of Object.entries(ctx.oidc.resourceServers ?? {})) {
      grant.addResourceScope(indicator, resourceServer.scope);
    }
    const claims = [...ctx.oidc.requestParamClaims];
    if (claims.length) grant.addOIDCClaims(claims);
    await grant.save();
    return grant;
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', `<pre id="error">${esc(JSON.stringify(out, null, 2))}</pre>`);
  },
  clientBasedCORS: () => false,
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 600,
    IdToken: 3600,
    Interaction: 3600,
    Session: 86400,
    Grant: 86400,
    RefreshToken: 86400,
    ClientCredentials: 600,
  },
};

if (RESOURCE_SERVERS) {
  configuration.scopes = ['openid', 'offline_access', 'mcp'];
  configuration.features.registration = { enabled: true };
  configuration.features.revocation = { enabled: true };
  configuration.features.resourceIndicators = {
    enabled: true,
    defaultResource: (ctx, client, oneOf) => oneOf ?? undefined,
    useGrantedResource: () => true,
    getResourceServerInfo(ctx, resourceIndicator) {
      if (!resourceIndicator.startsWith('http://127.0.0.1:')) throw new errors.InvalidTarget();
      return {
        scope: 'mcp',
        audience: resourceIndicator,
        accessTokenTTL: ACCESS_TOKEN_TTL,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      };
    },
  };
  configuration.ttl.AccessToken = ACCESS_TOKEN_TTL;
  // A refresh token for every client allowed the grant (not only for offline_access requests).
  configuration.issueRefreshToken = async (ctx, client) => client.grantTypeAllowed('refresh_token');
}

let provider;
try {
  provider = new Provider(ISSUER, configuration);
} catch (e) {
  die(`configuration error: ${e.message}${e.error_description ? ` (${e.error_description})` : ''}`);
}

provider.on('server_error', (ctx, err) => console.error('server_error', err?.stack ?? err));

// ---- MISBEHAVIOUR (test only): FROM's requests are processed as TO -> tokens have aud=TO
if (swap) {
  process.stderr.write(`provider.mjs: MISBEHAVING: client ${swap.from} gets tokens for audience ${swap.to}\n`);
  provider.use(async (ctx, next) => {
    if (ctx.method === 'GET' && (ctx.path === '/auth' || ctx.path === '/session/end')) {
      const q = new URLSearchParams(ctx.querystring);
      if (q.get('client_id') === swap.from) {
        q.set('client_id', swap.to);
        ctx.querystring = q.toString();
      }
    } else if (ctx.method === 'POST' && ctx.path === '/token') {
      const m = /^Basic\s+(.+)$/i.exec(ctx.get('authorization'));
      if (m) {
        const decoded = Buffer.from(m[1], 'base64').toString('utf8');
        const i = decoded.indexOf(':');
        if (i > 0 && formDec(decoded.slice(0, i)) === swap.from) {
          ctx.req.headers.authorization = `Basic ${b64(`${formEnc(swap.to)}:${formEnc(swap.toSecret)}`)}`;
        }
      }
      if (ctx.is('application/x-www-form-urlencoded')) {
        // also cover client_id (and client_secret_post) in the body; pre-parsed body is
        // picked up by oidc-provider from ctx.req.body (it logs a notice, filtered above)
        const body = await readForm(ctx.req);
        if (body.get('client_id') === swap.from) {
          body.set('client_id', swap.to);
          if (body.has('client_secret')) body.set('client_secret', swap.toSecret);
        }
        ctx.req.body = body.toString();
      }
    }
    await next();
  });
}

// ---- interaction routes (custom login / consent UI)
provider.use(async (ctx, next) => {
  const m = /^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?$/.exec(ctx.path);
  if (!m) return next();
  const [, uid, action] = m;
  ctx.set('cache-control', 'no-store');
  try {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== uid) throw new errors.SessionNotFound('interaction uid mismatch');
    const { prompt, params, session } = details;
    const finish = async (result, merge) => {
      const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: merge });
      ctx.status = 303;
      ctx.redirect(returnTo);
    };

    if (!action && ctx.method === 'GET') {
      ctx.type = 'html';
      if (prompt.name === 'login') {
        ctx.body = loginPage(uid, params.client_id);
      } else if (prompt.name === 'consent') {
        ctx.body = consentPage(uid, params.client_id, prompt.details);
      } else {
        ctx.status = 400;
        ctx.body = page('Error', `<p>unsupported prompt ${esc(prompt.name)}</p>`);
      }
      return undefined;
    }

    if (action === 'login' && ctx.method === 'POST') {
      if (prompt.name !== 'login') throw new errors.InvalidRequest('not a login prompt');
      const form = await readForm(ctx.req);
      const login = form.get('login') ?? '';
      const user = Object.hasOwn(USERS, login) ? USERS[login] : undefined;
      const ok = user && crypto.timingSafeEqual(
        crypto.createHash('sha256').update(form.get('password') ?? '').digest(),
        crypto.createHash('sha256').update(user.password).digest(),
      );
      if (!ok) {
        ctx.type = 'html';
        ctx.status = 200;
        ctx.body = loginPage(uid, params.client_id, 'Invalid username or password.', login);
        return undefined;
      }
      return finish({ login: { accountId: login } }, false);
    }

    if (action === 'confirm' && ctx.method === 'POST') {
      if (prompt.name !== 'consent') throw new errors.InvalidRequest('not a consent prompt');
      await readForm(ctx.req);
      let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
      grant ??= new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      const d = prompt.details;
      if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
      if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
      if (d.missingResourceScopes) {
        for (const [indicator, scopes] of Object.entries(d.missingResourceScopes)) {
          grant.addResourceScope(indicator, scopes.join(' '));
        }
      }
      const grantId = await grant.save();
      return finish({ consent: details.grantId ? {} : { grantId } }, true);
    }

    if (action === 'abort' && (ctx.method === 'GET' || ctx.method === 'POST')) {
      if (ctx.method === 'POST') await readForm(ctx.req);
      return finish({ error: 'access_denied', error_description: 'End-User aborted interaction' }, false);
    }

    ctx.status = 405;
    ctx.body = 'method not allowed';
    return undefined;
  } catch (err) {
    if (err instanceof errors.OIDCProviderError) {
      ctx.status = err.status ?? 400;
      ctx.type = 'html';
      ctx.body = page('Error', `<p id="error">${esc(err.message)}: ${esc(err.error_description)}</p>`);
      return undefined;
    }
    throw err;
  }
});

server.on('request', provider.callback());

const shutdown = () => { server.close(() => process.exit(0)); server.closeAllConnections(); };
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

process.stdout.write(`${JSON.stringify({ issuer: ISSUER })}\n`);
