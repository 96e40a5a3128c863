// Starts GraphiQL on the gateway's page (handlers/graphiql.py). No inline script: the page's
// Content-Security-Policy allows scripts from this origin only.
(function () {
  "use strict";
  var root = document.getElementById("graphiql");
  var endpoint = window.location.pathname;
  if (!(window.React && window.ReactDOM && window.GraphiQL)) {
    root.className = "failed";
    root.textContent = "GraphiQL could not load its files from this gateway (" + endpoint +
      "/assets/). Operations still work with any HTTP client: POST JSON to " + endpoint + ".";
    return;
  }

  // The headers of GraphiQL's Headers tab (e.g. {"Authorization": "Bearer …"}), for the WebSocket.
  function savedHeaders() {
    try {
      var headers = JSON.parse(window.localStorage.getItem("graphiql:headers") || "{}");
      return headers && typeof headers === "object" ? headers : {};
    } catch (error) {
      return {};
    }
  }

  // Subscriptions go over graphql-ws (protocol graphql-transport-ws) on this same URL; the socket
  // opens only when a subscription runs. The handshake carries the session cookie; the
  // connection_init payload carries the Headers tab as {"headers": {...}}.
  var wsClient;
  if (window.graphqlWs) {
    wsClient = window.graphqlWs.createClient({
      url: (window.location.protocol === "https:" ? "wss://" : "ws://") + window.location.host + endpoint,
      lazy: true,
      retryAttempts: 0,
      connectionParams: function () {
        return { headers: savedHeaders() };
      },
    });
  }

  var fetcher = window.GraphiQL.createFetcher({ url: endpoint, wsClient: wsClient });
  window.ReactDOM.createRoot(root).render(
    window.React.createElement(window.GraphiQL, {
      fetcher: fetcher,
      defaultEditorToolsVisibility: true,
      defaultQuery: "{\n  health\n  version\n  me {\n    email\n    roles\n  }\n}\n",
    })
  );
})();
