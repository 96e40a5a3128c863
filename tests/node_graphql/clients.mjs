// The real npm GraphQL subscription clients against the gateway, one scenario per run (MODE).
// Run by tests/test_subscriptions_node.py; every line on stdout is one JSON object the test reads.
// Lines on stdin ("go") let the test act between steps (post a result, log out, ...).
import { createInterface } from 'node:readline';
import { createClient as createWsClient } from 'graphql-ws';
import { createClient as createSseClient } from 'graphql-sse';
import WebSocket from 'ws';

const env = process.env;
const GATEWAY = env.GATEWAY_URL;
const TOKEN = env.SESSION_TOKEN;
const say = (line) => process.stdout.write(JSON.stringify(line) + '\n');

const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();
const waitForGo = async () => { await lines.next(); };

const EXECUTE = 'mutation($name: String!, $clientId: String) { executePlaybook(name: $name, clientId: $clientId) { executionId requestId } }';
const EVENTS = `subscription($rid: ID, $eid: ID) {
  playbookEvents(requestId: $rid, executionId: $eid) { kind requestId executionId status step message progress data error at }
}`;

// A WebSocket implementation that sends the Origin header a browser would (cross-site test).
const withOrigin = (origin) => class extends WebSocket {
  constructor(address, protocols) { super(address, protocols, origin ? { origin } : {}); }
};

function wsClient(extra = {}) {
  return createWsClient({
    url: GATEWAY.replace('http://', 'ws://') + '/graphql',
    webSocketImpl: withOrigin(env.ORIGIN),
    connectionParams: TOKEN ? { session_token: TOKEN } : {},
    lazy: false,
    retryAttempts: 0,
    onNonLazyError: (error) => say({ nonLazyError: describe(error) }),
    on: {
      connected: (_socket, payload) => say({ connected: payload }),
      closed: (event) => say({ closed: event.code, reason: event.reason }),
    },
    ...extra,
  });
}

function sseClient() {
  return createSseClient({
    url: GATEWAY + '/graphql/stream',
    headers: { Authorization: `Bearer ${TOKEN}` },
    retryAttempts: 0,
  });
}

function describe(error) {
  if (error && typeof error === 'object' && 'code' in error && 'reason' in error) return { code: error.code, reason: error.reason };
  if (Array.isArray(error)) return { errors: error };
  return { message: String(error?.message ?? error) };
}

// One operation to its end: every result as a line, then {complete} (or {error}).
function run(client, query, variables, tag) {
  return new Promise((resolve) => {
    const results = [];
    client.subscribe({ query, variables }, {
      next: (result) => { results.push(result); say({ [tag]: result }); },
      error: (error) => { say({ [tag + 'Error']: describe(error) }); resolve(results); },
      complete: () => { say({ [tag + 'Complete']: true }); resolve(results); },
    });
  });
}

async function playbook(client, clientId) {
  const [started] = await run(client, EXECUTE, { name: env.PLAYBOOK, clientId: clientId ?? null }, 'started');
  return started.data.executePlaybook;
}

const scenarios = {
  // Start a playbook over the socket, (wait,) subscribe to its events until complete.
  async wsPlaybook() {
    const client = wsClient();
    const execution = await playbook(client);
    if (env.WAIT_BEFORE_SUBSCRIBE) await waitForGo();
    await run(client, EVENTS, { rid: execution.requestId }, 'event');
    await client.dispose();
  },
  // Subscribe to a request the test made (another replica posts its result).
  async wsSubscribe() {
    const client = wsClient();
    await run(client, EVENTS, { rid: env.REQUEST_ID }, 'event');
    await client.dispose();
  },
  // Connect and report how the gateway closes the socket (bad token, logout, ...).
  async wsClose() {
    await new Promise((resolve) => {
      const client = wsClient({
        on: {
          connected: () => say({ ready: true }),
          closed: (event) => { say({ closed: event.code, reason: event.reason }); resolve(); },
          error: (error) => say({ socketError: describe(error) }),
        },
      });
      client.subscribe({ query: '{ health }' }, { next() {}, error() {}, complete() {} });
    });
  },
  // Open subscriptions until the gateway refuses one.
  async wsLimit() {
    const client = wsClient();
    const count = Number(env.COUNT);
    const outcomes = [];
    for (let n = 0; n < count; n += 1) {
      outcomes.push(new Promise((resolve) => {
        client.subscribe({ query: `subscription { executionUpdates(executionId: "${n + 1}") { kind } }` }, {
          next() {},
          error: (error) => resolve(describe(error)),
          complete: () => resolve('complete'),
        });
        setTimeout(() => resolve('open'), 1500);
      }));
    }
    say({ outcomes: await Promise.all(outcomes) });
    await client.dispose();
  },
  // Hold COUNT subscriptions (executionUpdates of ids FIRST..) until "go", then dispose of the client:
  // a refusal prints {refused}; the test reads the gateway's side to know which are open.
  async wsHold() {
    const client = wsClient();
    const first = Number(env.FIRST ?? 1);
    for (let n = 0; n < Number(env.COUNT); n += 1) {
      client.subscribe({ query: `subscription { executionUpdates(executionId: "${first + n}") { kind } }` }, {
        next() {},
        error: (error) => say({ refused: describe(error) }),
        complete: () => say({ completed: first + n }),
      });
    }
    say({ subscribing: Number(env.COUNT) });
    await waitForGo();
    await client.dispose();
    say({ disposed: true });
  },
  // graphql-sse: executePlaybook with an /events client id, then the request's events.
  async ssePlaybook() {
    const client = sseClient();
    const execution = await playbook(client, env.CLIENT_ID);
    if (env.WAIT_BEFORE_SUBSCRIBE) await waitForGo();
    await run(client, EVENTS, { rid: execution.requestId }, 'event');
    client.dispose();
  },
};

const scenario = scenarios[env.MODE];
if (!scenario) { say({ fatal: `unknown MODE ${env.MODE}` }); process.exit(2); }
try {
  await scenario();
  say({ done: true });
  process.exit(0);
} catch (error) {
  say({ fatal: describe(error) });
  process.exit(1);
}
