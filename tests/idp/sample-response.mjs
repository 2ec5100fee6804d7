// Prints a real SAMLResponse from samlify, signed with the test IdP's key, both
// the Response and the Assertion: the seed the SAML fuzz test mutates
// (tests/data/saml-response-signed.xml was made with it).
//
//   node tests/idp/sample-response.mjs > tests/data/saml-response-signed.xml
import fs from 'node:fs';
import path from 'node:path';
import * as samlify from 'samlify';
import * as validator from '@authenio/samlify-node-xmllint';

samlify.setSchemaValidator(validator);
const data = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'data');
const REDIRECT = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect';
const POST = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST';
const idp = samlify.IdentityProvider({
  entityID: 'https://idp.example.test/metadata',
  privateKey: fs.readFileSync(path.join(data, 'saml-idp-key.pem')),
  signingCert: fs.readFileSync(path.join(data, 'saml-idp-cert.pem')),
  singleSignOnService: [{ Binding: REDIRECT, Location: 'https://idp.example.test/sso' }],
});
const sp = samlify.ServiceProvider({
  entityID: 'https://sp.example.test/sso/acme/saml/entra',
  assertionConsumerService: [{ Binding: POST, Location: 'https://sp.example.test/sso/acme/saml/entra/acs' }],
  wantAssertionsSigned: true,
  wantMessageSigned: true,
});
const { context } = await idp.createLoginResponse(sp, { extract: { request: { id: '_req1' } } }, 'post', { email: 'alice@acme.io' });
process.stdout.write(Buffer.from(context, 'base64').toString('utf8'));
