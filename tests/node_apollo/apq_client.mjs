// The real Apollo Client with its persisted-queries link against two gateway replicas
// (run by tests/test_graphql_apq_apollo.py). Every HTTP request the link sends is recorded as the
// gateway receives it: method, whether the document text was in it, the hash, status, error codes.
//
// env: GATEWAY_A, GATEWAY_B (base URLs), TOKEN (a session token). Prints one JSON object.
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { createHash } from "node:crypto";

const { GATEWAY_A, GATEWAY_B, TOKEN } = process.env;
const sha256 = (text) => createHash("sha256").update(text).digest("hex");

function recordingFetch(log) {
  return async (input, init = {}) => {
    const url = new URL(String(input));
    const method = (init.method || "GET").toUpperCase();
    const body = method === "POST" ? JSON.parse(init.body) : null;
    const extensionsText = url.searchParams.get("extensions");
    const extensions = body ? body.extensions : extensionsText ? JSON.parse(extensionsText) : undefined;
    const response = await fetch(input, init);
    let codes = [];
    try {
      codes = (JSON.parse(await response.clone().text()).errors || []).map((error) => error.extensions?.code);
    } catch {
      codes = ["<not JSON>"];
    }
    log.push({
      gateway: url.origin,
      method,
      hasQuery: body ? typeof body.query === "string" : url.searchParams.has("query"),
      hash: extensions?.persistedQuery?.sha256Hash ?? null,
      status: response.status,
      codes,
    });
    return response;
  };
}

// A fresh client per step: nothing cached in the client, every step goes over the wire.
function client(base, log, useGETForHashedQueries) {
  const persisted = new PersistedQueryLink({ sha256, useGETForHashedQueries });
  const http = new HttpLink({
    uri: `${base}/graphql`,
    fetch: recordingFetch(log),
    headers: { Authorization: `Bearer ${TOKEN}` },
  });
  return new ApolloClient({ cache: new InMemoryCache(), link: persisted.concat(http) });
}

const HEALTH = gql`
  query ApqHealth {
    health
    me {
      email
    }
  }
`;
const RUN = gql`
  mutation ApqRun {
    executePlaybook(name: "tests/noop", variables: { from: "apollo" }) {
      id
      executionId
    }
  }
`;

async function step(name, base, useGET, operation) {
  const log = [];
  const apollo = client(base, log, useGET);
  const result = operation.kind === "query"
    ? await apollo.query({ query: operation.document, fetchPolicy: "network-only" })
    : await apollo.mutate({ mutation: operation.document });
  return { name, data: result.data ?? null, error: result.error ? String(result.error) : null, requests: log };
}

const query = { kind: "query", document: HEALTH };
const mutation = { kind: "mutation", document: RUN };
const steps = [];
try {
  steps.push(await step("query: first time on A", GATEWAY_A, true, query));
  steps.push(await step("query: again on A", GATEWAY_A, true, query));
  steps.push(await step("query: on B, which never saw the text", GATEWAY_B, true, query));
  steps.push(await step("mutation: first time on A", GATEWAY_A, true, mutation));
  steps.push(await step("mutation: on B", GATEWAY_B, true, mutation));
  console.log(JSON.stringify({ steps }));
} catch (error) {
  console.log(JSON.stringify({ steps, failure: String(error && error.stack ? error.stack : error) }));
  process.exitCode = 1;
}
