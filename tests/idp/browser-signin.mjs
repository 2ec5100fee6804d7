// Both sign-in flows, and a login-CSRF attempt, in a real browser: Debian's
// headless Chromium driven by playwright-core. The service is on one site
// (https://localhost:PORT, behind tls-proxy.mjs), the IdPs on another
// (http://127.0.0.1:...), and the attacker's page on a third, as in life:
// cookie rules across sites are browser behaviour, so a browser proves them.
//
//   CHROMIUM=/usr/bin/chromium PUBLIC=https://localhost:PORT node browser-signin.mjs
//
// Prints one JSON object: what each flow ended with.
import { chromium } from 'playwright-core';

const PUBLIC = process.env.PUBLIC;
const OIDC_START = `${PUBLIC}/sso/acme/start?connection=okta&return_to=/app/oidc`;
const SAML_START = `${PUBLIC}/sso/acme/start?connection=entra&return_to=/app/saml`;
const ATTACKER = 'http://attacker.test/';
const TIMEOUT = 20000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  headless: true,
  // The flags this machine's closed network needs, and the test CA's
  // certificate accepted (it is not in the system store).
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--ignore-certificate-errors',
  ],
});
const newContext = () => browser.newContext({ ignoreHTTPSErrors: true });

// What `GET /sso/session` answers with the context's cookies.
async function session(context) {
  const r = await context.request.get(`${PUBLIC}/sso/session`);
  return { status: r.status(), body: await r.json().catch(() => null) };
}

async function signInOidc(page, login) {
  await page.goto(OIDC_START, { timeout: TIMEOUT });
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', 'any-password');
  await page.click('button[type=submit]');
  await page.waitForLoadState();
  if (!page.url().startsWith(PUBLIC)) {
    await page.click('button[type=submit]'); // consent
  }
  await page.waitForURL((u) => u.href.startsWith(`${PUBLIC}/app/`), { timeout: TIMEOUT });
}

async function toSamlIdp(page, login) {
  await page.goto(SAML_START, { timeout: TIMEOUT });
  await page.fill('input[name=login]', login);
  await page.click('button[type=submit]');
}

const out = {};
try {
  const oidc = await newContext();
  await signInOidc(await oidc.newPage(), 'alice');
  out.oidc = await session(oidc);

  const saml = await newContext();
  const page = await saml.newPage();
  let stateCookie = null;
  page.on('request', async (req) => {
    if (req.method() === 'POST' && req.url().endsWith('/acs')) {
      stateCookie = (await req.allHeaders()).cookie || null;
    }
  });
  await toSamlIdp(page, 'alice');
  await page.waitForURL((u) => u.href.startsWith(`${PUBLIC}/app/`), { timeout: TIMEOUT });
  out.saml = await session(saml);
  out.samlAcsCookie = stateCookie;

  // The attacker signs in at the IdP as themselves and keeps the response
  // instead of letting the browser post it...
  const attacker = await newContext();
  const attackerPage = await attacker.newPage();
  let captured = null;
  await attackerPage.route('**/acs', async (route) => {
    captured = route.request().postData();
    await route.abort();
  });
  await toSamlIdp(attackerPage, 'mallory');
  const deadline = Date.now() + TIMEOUT;
  while (!captured && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  // ...and makes the victim's browser post it from a page of their own.
  const victim = await newContext();
  const victimPage = await victim.newPage();
  const fields = [...new URLSearchParams(captured || '')]
    .map(([k, v]) => `<input type="hidden" name="${k}" value="${v.replace(/"/g, '&quot;')}">`)
    .join('');
  const acs = `${PUBLIC}/sso/acme/saml/entra/acs`;
  await victimPage.route(`${ATTACKER}**`, (route) => route.fulfill({
    contentType: 'text/html',
    body: `<form method="post" action="${acs}">${fields}</form><script>document.forms[0].submit()</script>`,
  }));
  const answer = victimPage.waitForResponse((r) => r.url() === acs, { timeout: TIMEOUT });
  await victimPage.goto(ATTACKER);
  const posted = await answer;
  out.csrf = {
    captured: Boolean(captured),
    status: posted.status(),
    // A redirect (a sign-in that went through) has no body to read.
    body: posted.status() >= 300 && posted.status() < 400 ? '' : await posted.text(),
    session: await session(victim),
  };
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out));
