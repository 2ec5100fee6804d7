// A real SAML 2.0 identity provider for idsync's tests, built on `samlify` (a
// different XML-signature stack from the xmlsec behind idsync's SP, so this is a
// true interoperability test).
//
//   node saml-idp.mjs PORT
//
// Listens on 127.0.0.1:PORT; entity ID and metadata at http://127.0.0.1:PORT/metadata.
// The SP comes from the environment (SP_ENTITY_ID, SP_ACS_URL), the accounts as
// JSON (IDP_ACCOUNTS: {login: {email, givenName, familyName, groups}}), the
// signing key and certificate as PEM file paths (IDP_KEY, IDP_CERT).
//
//   GET  /sso?SAMLRequest=…&RelayState=…   SP-initiated: parses the AuthnRequest
//                                          with samlify, shows a login form
//   POST /login                            signs the Response and answers the
//                                          auto-posting form to the ACS
//   GET  /initiate?login=…                 IdP-initiated (unsolicited) response
//
// With IDP_WANT_SIGNED_REQUESTS=1 the IdP requires signed AuthnRequests, as
// Entra ID and Okta can: it reads the SP's certificates from the SP metadata
// (SP_ENTITY_ID + '/metadata', fetched per request like an IdP refreshing
// metadata) and samlify checks the HTTP-Redirect signature against them.
//
// `variant` (a form field) makes the IdP sign what a misconfigured or hostile
// IdP would: `wrong-audience`, `no-audience`, `expired`; `signed-response`
// signs the Response as well as the Assertion.
// Exits by itself when the process IDSYNC_OWNER_PID is gone.
import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import * as samlify from 'samlify';
import * as validator from '@authenio/samlify-node-xmllint';

samlify.setSchemaValidator(validator);

const port = Number(process.argv[2] || 0);
const base = `http://127.0.0.1:${port}`;
const accounts = JSON.parse(process.env.IDP_ACCOUNTS || '{}');
const POST = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST';
const REDIRECT = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect';

const idp = samlify.IdentityProvider({
  entityID: `${base}/metadata`,
  privateKey: fs.readFileSync(process.env.IDP_KEY),
  signingCert: fs.readFileSync(process.env.IDP_CERT),
  singleSignOnService: [{ Binding: REDIRECT, Location: `${base}/sso` }],
  nameIDFormat: ['urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress'],
  requestSignatureAlgorithm: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
});
const wantSigned = process.env.IDP_WANT_SIGNED_REQUESTS === '1';
const strictIdp = samlify.IdentityProvider({
  entityID: `${base}/metadata`,
  privateKey: fs.readFileSync(process.env.IDP_KEY),
  signingCert: fs.readFileSync(process.env.IDP_CERT),
  singleSignOnService: [{ Binding: REDIRECT, Location: `${base}/sso` }],
  nameIDFormat: ['urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress'],
  wantAuthnRequestsSigned: true,
});
const sp = samlify.ServiceProvider({
  entityID: process.env.SP_ENTITY_ID,
  assertionConsumerService: [{ Binding: POST, Location: process.env.SP_ACS_URL }],
  wantAssertionsSigned: true,
});
// The same SP asking for the Response to be signed as well (variant
// `signed-response`), as ADFS and Shibboleth can be set up to do.
const spSignedMessage = samlify.ServiceProvider({
  entityID: process.env.SP_ENTITY_ID,
  assertionConsumerService: [{ Binding: POST, Location: process.env.SP_ACS_URL }],
  wantAssertionsSigned: true,
  wantMessageSigned: true,
});

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const newId = () => '_' + crypto.randomBytes(20).toString('hex');

function attribute(name, values) {
  const vs = values.map((v) => `<saml:AttributeValue xsi:type="xs:string">${esc(v)}</saml:AttributeValue>`).join('');
  return `<saml:Attribute Name="${esc(name)}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">${vs}</saml:Attribute>`;
}

// The Response template samlify signs: the usual one plus an AttributeStatement
// (samlify's default template carries no attributes).
function responseXml(user, inResponseTo, variant) {
  const now = new Date();
  const shift = (mins) => new Date(now.getTime() + mins * 60000).toISOString();
  const expired = variant === 'expired';
  const issued = expired ? shift(-30) : now.toISOString();
  const notOnOrAfter = expired ? shift(-20) : shift(5);
  const audience = variant === 'wrong-audience' ? 'https://someone-else.example' : process.env.SP_ENTITY_ID;
  const conditions = variant === 'no-audience'
    ? `<saml:Conditions NotBefore="${issued}" NotOnOrAfter="${notOnOrAfter}"/>`
    : `<saml:Conditions NotBefore="${issued}" NotOnOrAfter="${notOnOrAfter}"><saml:AudienceRestriction><saml:Audience>${esc(audience)}</saml:Audience></saml:AudienceRestriction></saml:Conditions>`;
  const irt = inResponseTo ? ` InResponseTo="${esc(inResponseTo)}"` : '';
  const assertionId = newId();
  const attrs = [
    attribute('email', [user.email]),
    user.givenName ? attribute('givenName', [user.givenName]) : '',
    user.familyName ? attribute('sn', [user.familyName]) : '',
    attribute('http://schemas.microsoft.com/ws/2008/06/identity/claims/groups', user.groups || []),
  ].join('');
  return `<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="${newId()}" Version="2.0" IssueInstant="${issued}" Destination="${esc(process.env.SP_ACS_URL)}"${irt}>`
    + `<saml:Issuer>${esc(idp.entityMeta.getEntityID())}</saml:Issuer>`
    + '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
    + `<saml:Assertion xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xs="http://www.w3.org/2001/XMLSchema" ID="${assertionId}" Version="2.0" IssueInstant="${issued}">`
    + `<saml:Issuer>${esc(idp.entityMeta.getEntityID())}</saml:Issuer>`
    + `<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">${esc(user.email)}</saml:NameID>`
    + `<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="${notOnOrAfter}" Recipient="${esc(process.env.SP_ACS_URL)}"${irt}/></saml:SubjectConfirmation></saml:Subject>`
    + conditions
    + `<saml:AuthnStatement AuthnInstant="${issued}" SessionIndex="${assertionId}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>`
    + `<saml:AttributeStatement>${attrs}</saml:AttributeStatement>`
    + '</saml:Assertion></samlp:Response>';
}

async function signedResponse(login, requestId, variant) {
  const user = accounts[login];
  if (!user) throw new Error(`no account ${login}`);
  const requestInfo = requestId ? { extract: { request: { id: requestId } } } : {};
  const target = variant === 'signed-response' ? spSignedMessage : sp;
  const { context } = await idp.createLoginResponse(target, requestInfo, 'post', user, () => ({
    id: newId(),
    context: responseXml(user, requestId, variant),
  }));
  return context;
}

function autopost(samlResponse, relayState) {
  const relay = relayState ? `<input type="hidden" name="RelayState" value="${esc(relayState)}"/>` : '';
  return `<!doctype html><html><body onload="document.forms[0].submit()"><form method="post" action="${esc(process.env.SP_ACS_URL)}"><input type="hidden" name="SAMLResponse" value="${esc(samlResponse)}"/>${relay}<noscript><button type="submit">Continue</button></noscript></form></body></html>`;
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type });
  res.end(body);
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, base);
    if (req.method === 'GET' && url.pathname === '/metadata') {
      return send(res, 200, 'application/samlmetadata+xml', idp.getMetadata());
    }
    if (req.method === 'GET' && url.pathname === '/sso') {
      const query = Object.fromEntries(url.searchParams);
      let parsed;
      if (wantSigned) {
        const metadata = await (await fetch(`${process.env.SP_ENTITY_ID}/metadata`)).text();
        const signedSp = samlify.ServiceProvider({ metadata });
        // The signed octets: the query as sent, without the Signature itself.
        const octetString = url.search.slice(1).split('&').filter((p) => !p.startsWith('Signature=')).join('&');
        parsed = await strictIdp.parseLoginRequest(signedSp, 'redirect', { query, octetString });
      } else {
        parsed = await idp.parseLoginRequest(sp, 'redirect', { query });
      }
      const requestId = parsed.extract.request.id;
      return send(res, 200, 'text/html', `<!doctype html><html><body><form method="post" action="/login">`
        + `<input type="hidden" name="request_id" value="${esc(requestId)}"/>`
        + `<input type="hidden" name="relay_state" value="${esc(query.RelayState || '')}"/>`
        + '<input type="text" name="login"/><input type="text" name="variant"/>'
        + '<button type="submit">Sign in</button></form></body></html>');
    }
    if (req.method === 'POST' && url.pathname === '/login') {
      let body = '';
      for await (const chunk of req) body += chunk;
      const form = Object.fromEntries(new URLSearchParams(body));
      const response = await signedResponse(form.login, form.request_id, form.variant || '');
      return send(res, 200, 'text/html', autopost(response, form.relay_state));
    }
    if (req.method === 'GET' && url.pathname === '/initiate') {
      const response = await signedResponse(url.searchParams.get('login'), null, url.searchParams.get('variant') || '');
      return send(res, 200, 'text/html', autopost(response, null));
    }
    send(res, 404, 'text/plain', 'not found');
  } catch (e) {
    send(res, 400, 'text/plain', `IdP error: ${e && e.message ? e.message : e}`);
  }
});

server.listen(port, '127.0.0.1', () => console.log(`saml idp listening on ${base}`));

const owner = Number(process.env.IDSYNC_OWNER_PID || 0);
if (owner) {
  setInterval(() => {
    try { process.kill(owner, 0); } catch { server.close(); process.exit(0); }
  }, 1000).unref();
}
process.on('SIGTERM', () => { server.close(); process.exit(0); });
