// What the travel SPA (noetl/travel, src/api/noetlClient.ts) does for one chat turn, in Node:
// open an EventSource on /events and take the clientId from the init message, call executePlaybook
// with that clientId over GraphQL (Node's fetch), then wait for the playbook/state frame whose
// params.execution_id (a string, compared after trim) is the executionId GraphQL returned and whose
// event_type is playbook.completed or playbook.failed. Like the SPA it keeps no frame that came
// before it started waiting. Run by tests/test_node_spa.py.
//
// env: GATEWAY_URL, SESSION_TOKEN, PLAYBOOK, WAIT_MS (how long to wait, the SPA: 180000).
// stdout, one JSON object per line: {"waiting": executionId} once the waiter is registered,
// then {"done": params, "ms": elapsed} — exit 0; on timeout or error a line {"error"} and exit 1.
import { EventSource } from 'eventsource';

const base = process.env.GATEWAY_URL;
const token = process.env.SESSION_TOKEN;
const playbook = process.env.PLAYBOOK;
const waitMs = Number(process.env.WAIT_MS || 180000);
const started = Date.now();
const waiters = new Map();

function say(line) {
  process.stdout.write(JSON.stringify(line) + '\n');
}

function fail(error) {
  say({ error: String(error && error.message ? error.message : error) });
  process.exit(1);
}

function handlePlaybookState(message) {
  const params = (message && message.params) || {};
  const executionId = String(params.execution_id || params.executionId || '').trim();
  const eventType = String(params.event_type || params.eventType || '').trim();
  if (!executionId || !eventType) return;
  if (eventType !== 'playbook.completed' && eventType !== 'playbook.failed') return;
  const waiter = waiters.get(executionId);
  if (!waiter) return; // not waiting (yet): dropped, as the SPA does
  waiters.delete(executionId);
  waiter(params);
}

function connect() {
  return new Promise((resolve, reject) => {
    const url = `${base}/events?session_token=${encodeURIComponent(token)}`;
    const source = new EventSource(url);
    const timer = setTimeout(() => reject(new Error('no init message')), 10000);
    source.addEventListener('message', (event) => {
      const message = JSON.parse(event.data);
      if (message && message.result && message.result.clientId) {
        clearTimeout(timer);
        resolve({ source, clientId: message.result.clientId });
      }
    });
    source.addEventListener('playbook/state', (event) => {
      handlePlaybookState(JSON.parse(event.data));
    });
  });
}

async function executePlaybook(clientId) {
  const query = `mutation ExecutePlaybook($name: String!, $vars: JSON, $clientId: String) {
    executePlaybook(name: $name, variables: $vars, clientId: $clientId) { id executionId requestId name status }
  }`;
  const response = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables: { name: playbook, vars: { query: 'SFO to JFK' }, clientId } }),
  });
  if (!response.ok) throw new Error(`GraphQL request failed (${response.status})`);
  const body = await response.json();
  if (body.errors && body.errors.length) throw new Error(body.errors[0].message);
  const execution = body.data.executePlaybook;
  return String(execution.executionId || execution.id || '').trim();
}

function waitForExecutionCompletion(executionId) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      waiters.delete(executionId);
      reject(new Error('Gateway lifecycle confirmation timed out'));
    }, waitMs);
    waiters.set(executionId, (params) => {
      clearTimeout(timer);
      resolve(params);
    });
  });
}

try {
  const { source, clientId } = await connect();
  const executionId = await executePlaybook(clientId);
  const done = waitForExecutionCompletion(executionId);
  say({ waiting: executionId });
  const params = await done;
  say({ done: params, ms: Date.now() - started });
  source.close();
  process.exit(0);
} catch (error) {
  fail(error);
}
