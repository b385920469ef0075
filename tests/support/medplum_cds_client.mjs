// A real EHR-side CDS Hooks client: @medplum/core's MedplumClient discovers neurocds's services
// and calls one, each time with a fresh signed EHR JWT as its bearer token.
//   node --experimental-websocket medplum_cds_client.mjs BASE TOKEN1 TOKEN2 BODY_JSON
import { createRequire } from 'node:module';

// The package lives in the bootstrap cache, not in the checkout: resolve it from NODE_PATH.
const require = createRequire(`${process.env.NODE_PATH}/`);
const { MedplumClient } = require('@medplum/core');

const [base, token1, token2, body] = process.argv.slice(2);
const client = new MedplumClient({ baseUrl: base.endsWith('/') ? base : base + '/', fetch });
client.setAccessToken(token1);
const discovery = await client.getCdsServices();
client.setAccessToken(token2);
const sign = discovery.services.find((s) => s.hook === 'order-sign');
const answer = await client.callCdsService(sign.id, JSON.parse(body));
console.log(JSON.stringify({ services: discovery.services.map((s) => s.id), answer }));
