// A real OpenID Provider (the certified `oidc-provider` package) for idsync's tests.
//
//   node oidc-provider.mjs PORT
//
// Listens on 127.0.0.1:PORT with issuer http://127.0.0.1:PORT. Clients and accounts
// come from the environment as JSON (IDP_CLIENTS, IDP_ACCOUNTS) so each test says
// what it needs. Exits by itself when the process IDSYNC_OWNER_PID is gone.
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 0);
const issuer = `http://127.0.0.1:${port}`;
const clients = JSON.parse(process.env.IDP_CLIENTS || '[]');
const accounts = JSON.parse(process.env.IDP_ACCOUNTS || '{}');

const provider = new Provider(issuer, {
  clients,
  // Put email and groups into the ID token, as Okta and Entra can be told to.
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['given_name', 'family_name', 'name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, sub) {
    const account = accounts[sub];
    if (!account) return undefined;
    return { accountId: sub, async claims() { return { sub, ...account }; } };
  },
});
// Plain HTTP on loopback only.
provider.proxy = true;

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});

const owner = Number(process.env.IDSYNC_OWNER_PID || 0);
if (owner) {
  setInterval(() => {
    try { process.kill(owner, 0); } catch { server.close(); process.exit(0); }
  }, 1000).unref();
}
process.on('SIGTERM', () => { server.close(); process.exit(0); });
